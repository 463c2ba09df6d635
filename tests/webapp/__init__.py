"""Tests of the MUSHRA web app."""
