"""Tests of the torch-free bottom package."""
