"""Model-zoo tests run torch on one thread: the models are small, and two threads on a loaded
2-core machine (browser, database and server tests share it) are several times slower."""

import torch

torch.set_num_threads(1)
