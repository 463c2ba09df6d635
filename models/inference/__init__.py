"""Running trained models: offline rendering, block streaming, and the speed benchmark."""
