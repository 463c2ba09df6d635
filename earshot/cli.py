"""``earshot SUBCOMMAND ...``: the stages of the pipeline as subcommands of one console script."""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """A subcommand: the module whose ``main(argv)`` runs it and the verb put before the user's
    arguments (``serve`` for ``earshot serve``), if the subcommand is one verb of a stage's CLI."""

    module: str
    verb: str | None
    help: str


SUBCOMMANDS: dict[str, Stage] = {
    "zoo": Stage("models.cli", None,
                 "train and measure models: study, measure, train, dataset, devices, render, bench, export "
                 "(= python -m models)"),
    "stimuli": Stage("stimulus_sets.cli", None,
                     "build, check or time a MUSHRA stimulus set from a trained study (= python -m stimulus_sets)"),
    "serve": Stage("webapp.__main__", "serve",
                   "serve stimulus sets to participants in the browser (= python -m webapp serve)"),
    "webapp": Stage("webapp.__main__", None,
                    "the web app's other verbs: set-password, export, import-webmushra, bench (= python -m webapp)"),
    "report": Stage("evaluation.__main__", "report",
                    "post-screen the ratings, test the differences, write the report (= python -m evaluation report)"),
    "analysis": Stage("evaluation.__main__", None,
                      "the analysis's other verbs: validate, simulate, power, bench (= python -m evaluation)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earshot",
        description="Earshot: make neural audio effects smaller and measure, with numbers and listeners, what "
        "it costs. Stages in pipeline order; `earshot SUBCOMMAND --help` shows the stage's own options.",
    )
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    for name, stage in SUBCOMMANDS.items():
        # add_help=False: --help belongs to the stage's parser, which prints its own options.
        sub.add_parser(name, help=stage.help, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Only the subcommand is parsed here; everything after it goes to the stage untouched.
    known, _ = parser.parse_known_args(argv[:1])
    stage = SUBCOMMANDS[known.subcommand]
    rest = argv[1:]
    module = importlib.import_module(stage.module)
    return module.main(([stage.verb] if stage.verb else []) + rest)
