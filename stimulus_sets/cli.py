"""``python -m stimulus_sets``: build a MUSHRA stimulus set from a trained study, check one, or time
the build."""

from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import run_verb, setup_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m stimulus_sets",
        description="Earshot stimulus sets: select trained runs from a study's runs.csv (and .nam files or "
        "Earshot exports), render them with the reference and the BS.1534-3 anchors, align loudness, and write "
        "a MUSHRA set for the web app and webMUSHRA; check a set; time the build.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only, hide progress bars")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser("build", help="build a MUSHRA stimulus set from a trained study and/or model files",
                         description="Build stimuli/<set>/ (manifest.json, audio/<trial>/<condition>.wav, "
                         "webmushra.yaml) from CONFIG: the runs its groups select from the runs.csv of its "
                         "study_dir and the .nam files and exports they name (nam: FILE, export: FILE; their "
                         "real-time factor is timed after rendering), rendered with the reference (a device, a "
                         "recording or a model such as reference: {nam: FILE}), hidden reference and the 3.5 and 7 kHz anchors, "
                         "latency-compensated, loudness-aligned, with 5 ms fades and the BS.1534-3 limits "
                         "enforced. The set is written into a temporary folder and moved into place when complete.")
    p.add_argument("config", type=Path, metavar="CONFIG", help="stimulus config YAML, e.g. stimulus_sets/sets/demo.yaml")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="set folder to create, e.g. stimuli/demo")
    p.add_argument("--force", action="store_true",
                   help="replace DIR if it is a stimulus set this command wrote, once the new set is complete "
                   "(a folder holding anything else, e.g. a file of yours, is refused and left as it is)")
    p.add_argument("--no-strict", action="store_true",
                   help="allow more than 12 signals or 12 s per trial and fewer than 5 items; the manifest "
                   "records bs1534_enforced: false and which limits were exceeded")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="torch threads while rendering (default 1)")

    p = verbs.add_parser("check", help="validate an existing stimulus set and print a verdict per trial",
                         description="Check every trial of the set in SET: files present and readable at the set's "
                         "rate and bit depth, equal lengths, the hidden reference identical to the reference, "
                         "loudness within 0.5 LU, true peaks under the ceiling, anchors meeting the BS.1534-3 "
                         "mask, and the BS.1534-3 limits when the set enforces them. Exit status 1 when a trial "
                         "fails.")
    p.add_argument("set", type=Path, metavar="SET", help="stimulus set folder holding manifest.json, e.g. stimuli/demo")

    p = verbs.add_parser("bench", help="time building a 12-trial stimulus set from a trained study",
                         description="Time building a 12-trial stimulus set (3 items x 4 groups, 10 s at the "
                         "study's rate) from the runs of a trained study, in a temporary folder, split into "
                         "setup, rendering, filtering, metrics, loudness and writing, with the CPU model and load.")
    p.add_argument("--study-dir", type=Path, default=Path("results/zoo/demo"), metavar="DIR",
                   help="trained study folder holding runs.csv and runs/ (default: results/zoo/demo)")
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    setup_logging(args.verbose, args.quiet)


def _cmd_build(args: argparse.Namespace) -> int:
    from stimulus_sets.build import PhaseTimes, build_from_file

    times = PhaseTimes()
    manifest = build_from_file(args.config, args.out, strict=False if args.no_strict else None, force=args.force,
                               threads=args.threads, times=times)
    trials = manifest["trials"]
    training = sum(bool(t["training"]) for t in trials)
    print(f"wrote {args.out}: {len(trials) - training} rated + {training} training trials, "
          f"{manifest['duration_s']:g} s at {manifest['sample_rate']} Hz, {manifest['bit_depth']}-bit, "
          f"loudness {manifest['loudness_target_lufs']:g} LUFS, BS.1534-3 limits "
          f"{'enforced' if manifest['bs1534_enforced'] else 'NOT enforced: ' + '; '.join(manifest['bs1534_exceeded'])}")
    for t in trials:
        systems = ", ".join(f"{c['id']} (latency {c['latency_samples']}, ESR {c['objective']['esr']:.3g})"
                            for c in t["conditions"] if c["role"] == "system")
        print(f"  {t['id']:<28} trial gain {t['trial_gain_db']:+.2f} dB  {systems}")
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.seconds.items()))
    print(f"webMUSHRA config: {args.out / 'webmushra.yaml'}; check with: python -m stimulus_sets check {args.out}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from stimulus_sets.check import check_stimulus_set, verdict_text

    frame = check_stimulus_set(args.set)
    print(f"checking {args.set}")
    print(verdict_text(frame))
    return 0 if frame["ok"].all() else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from stimulus_sets.bench import run_stimulus_bench

    return run_stimulus_bench(args.study_dir)


COMMANDS = {"build": _cmd_build, "check": _cmd_check, "bench": _cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args)
    return run_verb(lambda: COMMANDS[args.verb](args),
                    interrupted="interrupted: nothing was written (a set being replaced is left as it was)")
