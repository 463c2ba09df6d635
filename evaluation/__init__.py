"""Evaluation of MUSHRA listening tests and objective metrics for neural audio effects.

Submodules: ``metrics`` (objective metrics, a numpy/scipy leaf the model zoo imports), ratings I/O,
post-screening, statistics, figures and reports. This package never imports torch or the web app.
"""
