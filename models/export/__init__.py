"""Trained models out of a run folder: the portable .pt bundle and NAM's .nam format."""
