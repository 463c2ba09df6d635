"""Helpers used by more than one test folder."""
