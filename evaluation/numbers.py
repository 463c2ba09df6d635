"""``numbers.json``: every number of a report, with its configuration, seeds and software versions."""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from common import provenance

if TYPE_CHECKING:
    from .analysis import Analysis


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is pd.NA or value is None:
        return None
    if isinstance(value, (Path, datetime)):
        return str(value)
    return value


def _records(frame: pd.DataFrame) -> list[dict]:
    if frame is None or frame.empty:
        return []
    return _jsonable(frame.astype(object).where(frame.notna(), None).to_dict("records"))


ANALYSIS_SOFTWARE = ("numpy", "scipy", "pandas", "statsmodels", "matplotlib", "pyloudnorm", "earshot")
"""The distributions whose versions a report records (with Python's)."""


def software_versions() -> dict[str, str]:
    return provenance.software_versions(ANALYSIS_SOFTWARE)


def numbers(
    analysis: Analysis,
    *,
    created_at: datetime | None = None,
    software: dict[str, str] | None = None,
) -> dict:
    """Every number of the report, with the configuration, seeds and software versions.

    ``created_at`` and ``software`` default to now and :func:`software_versions`.
    """
    a = analysis
    return _jsonable(
        {
            "title": a.title,
            "created_at": (created_at or datetime.now(UTC)).isoformat(timespec="seconds"),
            "inputs": {
                "ratings": a.source,
                "manifest": str(a.manifest.path) if a.manifest else None,
            },
            "software": software if software is not None else software_versions(),
            "seeds": {"permutation": a.config.seed, "bootstrap": a.config.seed},
            "config": asdict(a.config),
            "screening_config": asdict(a.screening_config),
            "validation": a.validation.to_dict(),
            "screening": {
                **a.screening.to_dict(),
                "listeners": _records(a.screening.listeners),
                "anchor_trials": _records(a.screening.anchor_trials),
            },
            "descriptives": _records(a.descriptives),
            "descriptives_by_item": _records(a.descriptives_by_item),
            "omnibus": {
                group: {
                    "method": r.method,
                    "n_listeners": r.n_listeners,
                    "effects": _records(r.effects),
                    "residuals": r.residuals,
                    "friedman": _records(r.friedman),
                    "notes": r.notes,
                }
                for group, r in a.omnibus.items()
            },
            "comparisons": _records(a.comparisons),
            "objective": _records(a.objective),
            "correlations": _records(a.correlations),
            "cost": _records(a.cost),
            "warnings": a.warnings,
            "notes": a.notes,
        }
    )
