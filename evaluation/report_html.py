"""``report.html``: the analysis as a self-contained page (styles inline, figures as data URLs).

The page is the Jinja2 template ``templates/report.html.j2``, rendered with autoescaping: every
value is escaped unless it is marked safe here (only the figures' base64 data).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

if TYPE_CHECKING:
    from .analysis import Analysis

#: Table columns shown as counts: no decimals when the value is whole.
_COUNT_COLUMNS = ("bits", "bytes", "params", "macs_per_sample", "df", "df1", "df2", "mv_df1", "mv_df2", "n")


@dataclass(frozen=True)
class Embed:
    """A figure as the page shows it."""

    png: bytes
    caption: str

    @property
    def src(self) -> Markup:
        # Base64 holds no character HTML would need escaped; marked safe so it is copied as is.
        return Markup("data:image/png;base64," + base64.b64encode(self.png).decode("ascii"))


@dataclass(frozen=True)
class Table:
    head: list[str]
    rows: list[list[str]]


def is_missing(x) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


def fmt(x, digits: int = 1) -> str:
    """A number with ``digits`` decimals, a dash when missing."""
    return "–" if is_missing(x) else f"{x:.{digits}f}"


def format_p(p: float) -> str:
    return "p " + ("< .001" if p < 0.001 else "= " + f"{p:.3f}".lstrip("0"))


def fact(data: dict, *keys: str) -> str:
    """A manifest fact under the first of ``keys`` present (the key names vary between writers)."""
    for key in keys:
        if key in data:
            value = data[key]
            return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return "not stated in the manifest"


def cell(column: str, value, digits: int) -> str:
    if is_missing(value):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if column == "p" or column.startswith("p_") or column.endswith("_p"):
            return "< .001" if value < 0.001 else f"{value:.3f}"
        if column in _COUNT_COLUMNS or column.startswith("n_"):
            return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"
        return f"{value:.{digits}f}"
    return str(value)


def table(frame: pd.DataFrame, columns: list[str], digits: int = 2) -> Table | None:
    """The cells of ``columns`` (those ``frame`` has) as text; None for an empty frame."""
    if frame.empty:
        return None
    shown = [c for c in columns if c in frame]
    rows = [[cell(c, row[c], digits) for c in shown] for row in frame[shown].to_dict("records")]
    return Table(shown, rows)


def records(frame: pd.DataFrame) -> list[dict]:
    return frame.to_dict("records")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("evaluation", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        {
            "fmt": fmt,
            "p": format_p,
            "spec": format,
        }
    )
    env.tests["missing"] = is_missing
    env.globals.update({"fact": fact, "table": table, "records": records})
    return env


def render_html(
    analysis: Analysis,
    figures: dict[str, Embed],
    *,
    generated: datetime,
    software: dict[str, str],
) -> str:
    """The page of ``analysis``; ``figures`` by the keys of ``analysis.figures``."""
    a = analysis
    omnibus = []
    for group, result in a.omnibus.items():
        condition = result.effects[result.effects["effect"] == "condition"]
        omnibus.append(
            {
                "group": group,
                "result": result,
                "condition": condition.iloc[0].to_dict() if not condition.empty else None,
                "friedman": result.friedman.iloc[0].to_dict() if not condition.empty else None,
            }
        )
    template = _environment().get_template("report.html.j2")
    return template.render(
        a=a,
        c=a.config,
        v=a.validation,
        s=a.screening,
        ci_text=a.config.interval_text,
        figs=figures,
        omnibus=omnibus,
        generated=generated.strftime("%Y-%m-%d %H:%M UTC"),
        software=software,
    )
