"""``python -m evaluation``: validate, screen, report, simulate, power and bench.

Every verb's ``--help`` explains its options. User mistakes print ``error: …`` and exit with 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from common.errors import EarshotError
from common.outputs import check_output_folder, write_file_atomic

from .errors import ConfigError, OutputError

log = logging.getLogger("evaluation")


def _add_ratings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ratings",
        required=True,
        help="ratings source: the web app's tidy CSV, a webMUSHRA mushra.csv, a list-valued CSV "
        "(Stahl et al. layout), any long CSV with --columns, a SQLite results database (.db) or an "
        "SQLAlchemy URL such as postgresql+psycopg://user@host/db",
    )
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", "tidy", "webmushra", "list", "long", "database"],
        help="how to read --ratings (default: auto — databases by suffix or URL, CSV files by header)",
    )
    parser.add_argument(
        "--columns",
        help="column mapping for a long CSV, tidy=file pairs: "
        "'participant=listener,trial=stimulus,condition=system,score=rating'",
    )
    parser.add_argument("--test", help="keep only this test of a ratings source that holds several")
    parser.add_argument(
        "--include-excluded",
        action="store_true",
        help="keep participants the experimenter excluded in the web app (database sources; "
        "left out by default, as in the web app's exports)",
    )
    parser.add_argument(
        "--stimuli",
        type=Path,
        help="stimulus-set folder with manifest.json: condition roles, items, groups, model facts "
        "and objective metrics",
    )
    parser.add_argument(
        "--roles",
        help="condition roles for data without a manifest, condition=role pairs with roles "
        "hidden_reference, anchor_low, anchor_mid, system (unlisted conditions are systems): "
        "'Reference=hidden_reference,Anchor=anchor_low'",
    )
    parser.add_argument(
        "--screening-config",
        type=Path,
        help="YAML file of post-screening thresholds (keys of ScreeningConfig, e.g. "
        "hidden_reference_max_fraction: 0.15, mid_anchor_item_guard: 0.25)",
    )
    parser.add_argument(
        "--allow-out-of-range",
        action="store_true",
        help="keep scores outside the 0–100 scale (refused by default, naming where they are); "
        "the report then says how many there were",
    )


def _inputs(args) -> list[Path]:
    """The files and folders a command reads, so that no output can land on one of them."""
    found = []
    for name in ("ratings", "pilot", "stimuli", "screening_config", "config"):
        value = getattr(args, name, None)
        if value is not None and "://" not in str(value):
            found.append(Path(value))
    return found


def _check_output_path(out: Path, inputs: list[Path], option: str = "--out") -> None:
    """Refuse, before any work, an output that is or holds an input, or that cannot be created."""
    target = Path(os.path.abspath(out))
    for source in inputs:
        path = Path(os.path.abspath(source))
        # realpath too: a symbolic link or ../ must not smuggle the input back in.
        for a, b in (
            (target, path),
            (Path(os.path.realpath(target)), Path(os.path.realpath(path))),
        ):
            if a == b:
                raise OutputError(
                    f"{option} {out}: expected a new path, found the input {source}; choose another path"
                )
            if a in b.parents:
                raise OutputError(
                    f"{option} {out}: expected a new path, found a folder holding the input {source}; choose another path"
                )
            if b in a.parents and b.is_dir():
                # Writing into an input folder (a stimulus set) would leave it holding files its
                # own command did not write, and the next rebuild of it would be refused.
                raise OutputError(
                    f"{option} {out}: expected a path outside the input folder {source}"
                )
    for ancestor in target.parents:
        if ancestor.is_dir():
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise OutputError(
                    f"{option} {out}: cannot write there ({ancestor} is not writable)"
                )
            return
        if os.path.lexists(ancestor):
            raise OutputError(
                f"{option} {out}: cannot write there ({ancestor} is a file, not a folder)"
            )


def _key_values(text: str, option: str, form: str) -> dict[str, str]:
    """Parse an option's ``key=value,key=value`` (``form`` names the pair in the message)."""
    found = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ConfigError(f"{option}: expected {form} pairs, found {part!r}")
        key, value = (s.strip() for s in part.split("=", 1))
        found[key] = value
    return found


def _load(args):
    from .config import load_config
    from .manifest import load_manifest
    from .ratings import Ratings, load_ratings
    from .screening import ScreeningConfig

    mapping = _key_values(args.columns, "--columns", "tidy=file") if args.columns else None
    ratings = load_ratings(
        args.ratings,
        format=args.format,
        mapping=mapping,
        include_excluded=getattr(args, "include_excluded", False),
        allow_out_of_range=getattr(args, "allow_out_of_range", False),
    )
    if args.test is not None:
        frame = ratings.ratings
        known = sorted(set(frame["test"]))
        frame = frame[frame["test"] == args.test].reset_index(drop=True)
        if frame.empty:
            raise ConfigError(f"--test: no ratings for test {args.test!r}; tests found: {known}")
        ratings = Ratings(frame, ratings.participants, ratings.source)
    manifest = load_manifest(args.stimuli) if args.stimuli else None
    roles = _key_values(args.roles, "--roles", "condition=role") if args.roles else None
    screening = (
        load_config(ScreeningConfig, args.screening_config)
        if args.screening_config
        else ScreeningConfig()
    )
    return ratings, manifest, roles, screening


def _prepared(args):
    from .manifest import annotate
    from .ratings import assign_roles

    ratings, manifest, roles, screening = _load(args)
    frame = annotate(ratings.ratings, manifest) if manifest else ratings.ratings
    if roles or manifest is None:
        frame = assign_roles(frame, roles or {})
    return frame, screening


def cmd_validate(args) -> int:
    from .screening import screen
    from .validation import validate_ratings

    if args.issues:
        _check_output_path(args.issues, _inputs(args), "--issues")
    frame, screening_config = _prepared(args)
    summary = validate_ratings(frame)
    for line in summary.lines():
        print(line)
    result = screen(frame, screening_config)
    print(result.description())
    for row in result.listeners[result.listeners["excluded"]].itertuples():
        print(f"  excluded {row.participant}: {row.reason}")
    if args.issues:
        write_file_atomic(args.issues, summary.issues.to_csv(index=False), OutputError)
        print(f"issues written to {args.issues}")
    return 0


def cmd_report(args) -> int:
    from .analysis import ReportConfig, analyse, check_pairs, prepare
    from .config import load_config
    from .report import write_report

    # Refused before the (long) analysis: an input as --out, a folder of the user's, a bad path.
    _check_output_path(args.out, _inputs(args))
    check_output_folder(args.out, "report", OutputError)
    ratings, manifest, roles, screening = _load(args)
    pairs = []
    for text in filter(None, (p.strip() for p in (args.pairs or "").split(","))):
        parts = text.split(":")
        if len(parts) == 2:
            pairs.append(("all" if manifest is None else None, *parts))
        elif len(parts) == 3:
            pairs.append(tuple(parts))
        else:
            raise ConfigError(f"--pairs: expected a:b or group:a:b, found {text!r}")
    if any(p[0] is None for p in pairs):
        raise ConfigError("--pairs: with --stimuli, name the group of each pair as group:a:b")
    base = load_config(ReportConfig, args.config) if args.config else ReportConfig()
    overrides = {
        "ci_over": args.ci_over,
        "ci_method": args.ci_method,
        "confidence": args.confidence,
        "correction": args.correction,
        "margin": args.margin,
        "n_permutations": args.permutations,
        "n_boot": args.bootstrap,
        "seed": args.seed,
        "item_effect": args.item_effect,
        "all_pairs": args.all_pairs,
        "pdf_figures": False if args.no_pdf else None,
    }
    try:
        config = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        # The file's values passed on loading, so the refused value came from an option.
        raise ConfigError(f"command line: {exc}") from None
    if pairs:
        check_pairs(prepare(ratings.ratings, manifest, roles), pairs, "--pairs")
    analysis = analyse(
        ratings,
        manifest,
        config=config,
        screening_config=screening,
        roles=roles,
        pairs=pairs,
        title=args.title,
    )
    out = write_report(analysis, args.out)
    for warning in analysis.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report written to {out / 'report.html'}")
    return 0


def cmd_simulate(args) -> int:
    from .manifest import load_manifest
    from .simulation import SimulationConfig, simulate_panel

    manifest = load_manifest(args.stimuli)
    config = SimulationConfig(
        n_listeners=args.listeners,
        n_careless=args.careless,
        listener_bias_sd=args.bias_sd,
        noise_sd=args.noise_sd,
        seed=args.seed,
    )
    out = args.out or Path("results") / f"{manifest.folder.name}-simulated.csv"
    if out.suffix.lower() != ".csv":
        raise OutputError(f"--out {out}: expected a path ending in .csv (the panel is a CSV file)")
    _check_output_path(out, [args.stimuli])
    panel = simulate_panel(manifest, config)
    write_file_atomic(out, panel.to_csv(index=False), OutputError)
    print(
        f"{len(panel)} ratings from {config.n_listeners} simulated listeners ({config.n_careless} careless) written to {out}"
    )
    return 0


def cmd_power(args) -> int:
    from .power import pilot_sd, power_curve

    if (args.sd_diff is None) == (args.pilot is None):
        raise ConfigError(
            "power: give either --sd-diff (assumed) or --pilot (a pilot ratings source), not both or neither"
        )
    if args.pilot is not None:
        args.ratings = args.pilot
        from .screening import screen

        frame, screening_config = _prepared(args)
        # The pilot's SD should come from the listeners an analysis would keep.
        frame = screen(frame, screening_config).apply(frame)
        if "group" not in frame:
            frame = frame.assign(group="all")
        sds = pilot_sd(frame[frame["role"] == "system"])
        worst = sds.loc[sds["sd_diff"].idxmax()]
        sd = float(worst["sd_diff"])
        print(
            f"pilot: SD of listener-mean differences over {len(sds)} system pairs: median {sds['sd_diff'].median():.2f}, "
            f"largest {sd:.2f} ({worst['a']} vs {worst['b']}, {int(worst['n'])} listeners) — using the largest"
        )
    else:
        sd = args.sd_diff
    result = power_curve(
        args.difference,
        sd,
        alpha=args.alpha,
        target_power=args.power,
        max_listeners=args.max_listeners,
        n_simulations=args.simulations,
        seed=args.seed,
    )
    for row in result.curve.itertuples():
        if row.n_listeners % 5 == 0 or row.n_listeners == result.n_required:
            print(f"  N = {row.n_listeners:4d}: power {row.power:.3f}")
    if result.n_required is None:
        print(
            f"{args.max_listeners} listeners are not enough to detect {args.difference:g} points (SD {sd:.2f}) with power {args.power:g} at alpha {args.alpha:g}"
        )
    else:
        print(
            f"listeners needed to detect a {args.difference:g}-point difference (SD of differences {sd:.2f}) "
            f"with power {args.power:g} at alpha {args.alpha:g} (two-sided paired t-test, {args.simulations} simulations per N): {result.n_required}"
        )
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    run_bench(print)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress (INFO level) to stderr"
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = sub.add_parser(
        "validate",
        help="validation summary and post-screening verdicts of a ratings source",
        description="Print the validation summary (ranges, duplicates, missing cells, balance, pages without a 100) and the BS.1534-3 post-screening verdict per listener.",
    )
    _add_ratings_options(p)
    p.add_argument("--issues", type=Path, help="also write every problem found as a CSV file here")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "report",
        help="the perceptual report of a listening test",
        description="Screen, analyse and write results/reports/<set>/: report.html, figures, CSVs, tables.tex, numbers.json.",
    )
    _add_ratings_options(p)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="report folder to write; an earlier report there is replaced as a whole, any other "
        "existing folder or file (the ratings, a folder of yours) is refused",
    )
    p.add_argument(
        "--title",
        help="report title (default: the stimulus set's folder name or the ratings file's name)",
    )
    p.add_argument(
        "--ci-over",
        choices=["listeners", "ratings"],
        help="confidence intervals over listener means (default; BS.1534-3 practice) or over all ratings (about half as wide, optimistic)",
    )
    p.add_argument(
        "--ci-method",
        choices=["t", "normal", "bca"],
        help="t-based (default), normal-based or BCa bootstrap intervals",
    )
    p.add_argument(
        "--confidence",
        type=float,
        help="confidence level of every interval (default 0.95)",
    )
    p.add_argument(
        "--correction",
        choices=["holm", "hochberg", "bonferroni"],
        help="family-wise correction of the planned comparisons' p-values (default holm)",
    )
    p.add_argument(
        "--margin",
        type=float,
        help="equivalence / non-inferiority margin in score points (default 5)",
    )
    p.add_argument(
        "--permutations",
        type=int,
        help="permutations of the Attachment-3 test on medians (default 10000)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        help="bootstrap resamples for BCa and correlation intervals (default 2000)",
    )
    p.add_argument(
        "--seed",
        type=int,
        help="seed of the permutation and bootstrap generators (default 0)",
    )
    p.add_argument(
        "--item-effect",
        choices=["fixed", "crossed"],
        help="item in the mixed model used for incomplete designs: fixed effect (default) or crossed random intercept",
    )
    p.add_argument(
        "--pairs", help="extra comparisons, comma-separated a:b (no manifest) or group:a:b"
    )
    p.add_argument(
        "--all-pairs",
        action="store_true",
        default=None,
        help="also compare every pair of systems within each group (a large family)",
    )
    p.add_argument("--no-pdf", action="store_true", help="write PNG figures only (faster)")
    p.add_argument(
        "--config",
        type=Path,
        help="YAML file of report settings (keys of ReportConfig: ci_over, ci_method, confidence, "
        "correction, margin, n_permutations, n_boot, seed, item_effect, all_pairs, "
        "compute_missing_metrics, pdf_figures); options given on the command line win",
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "simulate",
        help="a synthetic panel for a stimulus set, in the tidy format",
        description="Simulate listeners (bias, noise, a few careless ones) whose scores follow the manifest's objective metrics.",
    )
    p.add_argument(
        "--stimuli", type=Path, required=True, help="stimulus-set folder with manifest.json"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="CSV file to write (default results/<set>-simulated.csv); an existing .csv file "
        "there is replaced, anything else (another kind of file, an input) is refused",
    )
    p.add_argument("--listeners", type=int, default=24, help="panel size (default 24)")
    p.add_argument(
        "--careless", type=int, default=2, help="how many of them grade at random (default 2)"
    )
    p.add_argument(
        "--bias-sd",
        type=float,
        default=6.0,
        help="SD of the per-listener offset in points (default 6)",
    )
    p.add_argument(
        "--noise-sd", type=float, default=8.0, help="SD of the rating noise in points (default 8)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser(
        "power",
        help="listeners needed to detect a difference, by simulation",
        description="Smallest panel whose paired t-test on listener means detects --difference points with the given power.",
    )
    p.add_argument(
        "--difference", type=float, required=True, help="the difference to detect, in score points"
    )
    p.add_argument(
        "--sd-diff",
        type=float,
        help="assumed SD of one listener's mean difference between the two conditions",
    )
    p.add_argument(
        "--pilot", help="pilot ratings source to estimate that SD from (any --ratings source)"
    )
    p.add_argument(
        "--format",
        default="auto",
        choices=["auto", "tidy", "webmushra", "list", "long", "database"],
        help="how to read --pilot",
    )
    p.add_argument("--columns", help="column mapping for a long pilot CSV (see report --columns)")
    p.add_argument("--test", help="keep only this test of the pilot source")
    p.add_argument(
        "--allow-out-of-range",
        action="store_true",
        help="keep pilot scores outside 0–100 (refused by default)",
    )
    p.add_argument("--stimuli", type=Path, help="stimulus set of the pilot (roles and groups)")
    p.add_argument(
        "--roles", help="condition roles of the pilot without a manifest (see report --roles)"
    )
    p.add_argument("--screening-config", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--power", type=float, default=0.8, help="target power (default 0.8)")
    p.add_argument(
        "--max-listeners", type=int, default=200, help="largest panel to try (default 200)"
    )
    p.add_argument(
        "--simulations", type=int, default=4000, help="simulated panels per size (default 4000)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_power)

    p = sub.add_parser(
        "bench",
        help="time the full report and the screening of a million ratings",
        description="Prints the time of the full report for 100 listeners × 24 items × 8 conditions and of screening + descriptives of 1 000 000 ratings.",
    )
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except EarshotError as exc:
        return _fail(str(exc))
    except OSError as exc:
        # A file the user named cannot be read or written (permissions, a full disk): their
        # environment, not a bug, so one line rather than a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")


def _fail(message: str) -> int:
    # One line, whatever a library's message held (an SQL statement, a YAML excerpt).
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
