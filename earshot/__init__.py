"""The ``earshot`` console script: one command with the pipeline's stages as subcommands.

Each subcommand hands its arguments to the stage's own command line, which stays usable as
``python -m models|stimulus_sets|webapp|evaluation``; nothing is parsed twice and each stage is
imported only when its subcommand runs (``earshot serve`` never loads torch).
"""
