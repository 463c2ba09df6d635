"""The networks: LSTM stacks, WaveNets, and slimming them to a width."""
