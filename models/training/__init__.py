"""Training and compression: the training loop, losses, feature distillation, quantization, checkpoints."""
