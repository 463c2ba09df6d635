"""Stimulus-set tests render with torch on one thread, as the builder does by default: the models
are small, and two threads on a loaded 2-core machine are several times slower."""

import torch

torch.set_num_threads(1)
