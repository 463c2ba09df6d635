"""Datasets: windows of dry/wet audio from a built-in device, the user's recordings or a capture, split and cached."""
