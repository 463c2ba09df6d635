"""LaTeX tables (booktabs) for ``tables.tex``: paste into a paper with ``\\usepackage{booktabs}``."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd

_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def escape(text: object) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_SPECIALS.get(ch, ch) for ch in str(text))


def format_p(p: float) -> str:
    """APA-style p-value: ``< .001`` or three decimals without the leading zero."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "--"
    if p < 0.001:
        return "< .001"
    return f"{p:.3f}".lstrip("0") if p < 1 else "1.000"


def booktabs(
    frame: pd.DataFrame,
    columns: Sequence[tuple[str, str, Callable[[object], str] | None]],
    *,
    caption: str,
    label: str,
) -> str:
    """A ``table`` environment with ``\\toprule/\\midrule/\\bottomrule``.

    ``columns``: (frame column, header, formatter); a ``None`` formatter escapes the value as text.
    Headers are written as given (they may hold LaTeX math).
    """
    spec = "".join("l" if fmt is None else "r" for _, _, fmt in columns)
    lines = [
        r"\begin{table}[htbp]",
        r"  \centering",
        rf"  \caption{{{escape(caption)}}}",
        rf"  \label{{{label}}}",
        rf"  \begin{{tabular}}{{{spec}}}",
        r"    \toprule",
        "    " + " & ".join(header for _, header, _ in columns) + r" \\",
        r"    \midrule",
    ]
    for row in frame.itertuples(index=False):
        values = row._asdict()
        cells = []
        for column, _, fmt in columns:
            value = values[column]
            missing = (
                value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA
            )
            cells.append("--" if missing else (escape(value) if fmt is None else fmt(value)))
        lines.append("    " + " & ".join(cells) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def number(digits: int = 1) -> Callable[[object], str]:
    def fmt(value: object) -> str:
        return f"{float(value):.{digits}f}"

    return fmt


def integer(value: object) -> str:
    return f"{int(value)}"
