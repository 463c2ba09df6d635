"""Torch-free leaves shared by every stage of Earshot (zoo, stimulus sets, web app, analysis).

This package sits at the bottom of the import graph: it imports only the standard library, numpy,
scipy, PyYAML and pyloudnorm, so every stage may use it and it never pulls in torch, the zoo, the
web app or the analysis.
"""
