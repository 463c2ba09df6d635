"""Earshot model zoo: built-in devices, datasets, LSTM teachers and students, distillation, studies."""
