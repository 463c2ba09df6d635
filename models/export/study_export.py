"""Exporting from a study folder: one run picked by its runs.csv columns, or every finished run.

``python -m models export results/zoo/demo --select recipe=slimmable,width=1 …`` saves looking up a
run id; ``--all`` exports every run of ``runs.csv`` (the capture workflow exports all its students as
``.nam`` files this way). A run NAM cannot hold (an LSTM stack) is reported, not fatal, with ``--all``.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

from models.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

RUNS_CSV = "runs.csv"


def is_study_folder(path: Path) -> bool:
    return (path / RUNS_CSV).is_file() and (path / "runs").is_dir()


def parse_selection(text: str) -> dict[str, str]:
    """``recipe=kd,width=0.5`` → ``{"recipe": "kd", "width": "0.5"}``; ConfigError naming the bad part."""
    criteria: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--select: expected COLUMN=VALUE[,COLUMN=VALUE...], found {part!r} in {text!r}")
        criteria[key.strip()] = value.strip()
    return criteria


def _equal(cell: str, wanted: str) -> bool:
    # Numbers compare as numbers (runs.csv writes width 1.0, the user types 1).
    try:
        a, b = float(cell), float(wanted)
    except ValueError:
        return cell == wanted
    return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)


def _rows(study_dir: Path) -> list[dict[str, str]]:
    path = study_dir / RUNS_CSV
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc})") from None


def select_runs(study_dir: str | Path, criteria: dict[str, str] | None) -> list[Path]:
    """Run folders of ``study_dir`` whose runs.csv row matches every ``criteria`` column (all runs
    for None). ConfigError for an unknown column (naming the columns there are)."""
    study_dir = Path(study_dir)
    rows = _rows(study_dir)
    if criteria:
        columns = set(rows[0]) if rows else set()
        unknown = sorted(set(criteria) - columns)
        if rows and unknown:
            raise ConfigError(f"--select: {study_dir / RUNS_CSV} has no column {unknown[0]!r} "
                              f"(columns: {', '.join(sorted(columns))})")
        rows = [r for r in rows if all(_equal(r.get(k, ""), v) for k, v in criteria.items())]
    return [study_dir / "runs" / r["run_id"] for r in rows]


def export_study(study_dir: str | Path, out_dir: str | Path, select: str | None, every: bool,
                 **options: Any) -> list[tuple[Path, dict[str, Any] | None, str | None]]:
    """Export the run ``select`` picks (exactly one must match) or, with ``every``, each run that
    matches (all runs without ``select``). ``options`` go to :func:`models.export.bundle.export_run`.

    Returns ``(run_dir, result, None)`` per exported run and, with ``every``, ``(run_dir, None,
    reason)`` for a run it could not export (a network NAM cannot hold, an unfinished run).
    """
    from models.export.bundle import export_run

    study_dir = Path(study_dir)
    if select is None and not every:
        raise ConfigError(f"{study_dir} is a study folder: pick a run with --select COLUMN=VALUE[,...] "
                          f"(columns of its {RUNS_CSV}), or export every run with --all")
    runs = select_runs(study_dir, parse_selection(select) if select else None)
    if not every and len(runs) != 1:
        names = ", ".join(p.name for p in runs[:4]) + (", …" if len(runs) > 4 else "")
        raise ConfigError(f"--select {select}: expected exactly one run of {study_dir / RUNS_CSV} to match, "
                          f"found {len(runs)}{': ' + names if runs else ''}")
    if every and options.get("name") is not None:
        raise ConfigError("--name names one export; with --all every run keeps its run id")
    results: list[tuple[Path, dict[str, Any] | None, str | None]] = []
    for run_dir in runs:
        try:
            result = export_run(run_dir, out_dir, **options)
        except (ConfigError, CheckpointError) as exc:
            if not every:
                raise
            # One run NAM cannot hold (or not finished) must not stop the others.
            results.append((run_dir, None, str(exc)))
            continue
        results.append((run_dir, result, None))
    log.info("exported %d of %d run(s) of %s", sum(r[1] is not None for r in results), len(results), study_dir)
    return results
