"""Writing the perceptual report: an :class:`~evaluation.analysis.Analysis` into a folder.

:func:`write_report` writes the analysis :func:`evaluation.analysis.analyse` computed, and
computes nothing itself: ``report.html`` (self-contained, :mod:`evaluation.report_html`),
``figures/*.png|pdf``, ``screening.csv``, ``screening_outliers.csv``, ``validation.csv``,
``descriptives.csv``, ``tests.csv``, ``objective.csv``, ``correlations.csv``, ``cost.csv``,
``tables.tex`` (:mod:`evaluation.latex`) and ``numbers.json`` (:mod:`evaluation.numbers`). The
folder is built next to its destination and moved into place, so a failed run never leaves half a
report, and it replaces only an earlier report (never a folder or file of the user's).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from common.outputs import output_folder

from . import latex
from .analysis import Analysis, FigurePlan
from .errors import OutputError
from .numbers import numbers, software_versions
from .report_html import Embed, render_html

log = logging.getLogger(__name__)


def _draw(plan: FigurePlan, folder: Path, pdf: bool) -> Embed:
    import matplotlib.pyplot as plt

    fig = plan.draw()
    png = folder / f"{plan.stem}.png"
    fig.savefig(png, dpi=130)
    if pdf:
        fig.savefig(folder / f"{plan.stem}.pdf")
    plt.close(fig)
    return Embed(png.read_bytes(), plan.caption)


def write_report(analysis: Analysis, out_dir: Path | str) -> Path:
    """Write the report folder; returns its path.

    It is built beside ``out_dir`` and swapped in at the end (:func:`common.outputs.output_folder`),
    so a failed run leaves the previous report as it was. An existing ``out_dir`` is replaced only
    when it is an earlier report holding nothing else; anything else (a folder of the user's, the
    ratings file) is refused with an OutputError naming it, and nothing is deleted.
    """
    out_dir = Path(out_dir)
    a = analysis
    # One instant and one list of versions for both numbers.json and the page.
    generated = datetime.now(UTC)
    software = software_versions()
    with output_folder(out_dir, "report", OutputError) as staging:
        folder = staging / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        figs = {key: _draw(plan, folder, a.config.pdf_figures) for key, plan in a.figures.items()}
        a.screening.listeners.to_csv(staging / "screening.csv", index=False)
        a.screening.outliers.to_csv(staging / "screening_outliers.csv", index=False)
        a.validation.issues.to_csv(staging / "validation.csv", index=False)
        pd.concat(
            [
                a.descriptives.assign(level="condition"),
                a.descriptives_by_item.assign(level="condition_item"),
            ],
            ignore_index=True,
        ).to_csv(staging / "descriptives.csv", index=False)
        a.tests.to_csv(staging / "tests.csv", index=False)
        a.objective.to_csv(staging / "objective.csv", index=False)
        a.correlations.to_csv(staging / "correlations.csv", index=False)
        a.cost.to_csv(staging / "cost.csv", index=False)
        (staging / "tables.tex").write_text(latex.report_tables(a), encoding="utf-8")
        (staging / "numbers.json").write_text(
            json.dumps(
                numbers(a, created_at=generated, software=software), indent=1, allow_nan=False
            ),
            encoding="utf-8",
        )
        (staging / "report.html").write_text(
            render_html(a, figs, generated=generated, software=software), encoding="utf-8"
        )
    log.info("report written to %s", out_dir)
    return out_dir
