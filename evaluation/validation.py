"""The validation summary every analysis starts with: is this a usable MUSHRA panel?

Checks scores within 0–100, missing scores, duplicate ratings, missing cells (a listener rated a
trial but not all of its conditions), the balance of the design (listeners × trials × conditions)
and trials in which a listener gave no 100 (BS.1534-3 asks for at least one, the hidden reference).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

SCORE_MIN = 0.0
SCORE_MAX = 100.0
_KEY = ["test", "participant", "trial", "condition"]


@dataclass(frozen=True)
class ValidationSummary:
    """Counts of a panel's problems; ``issues`` lists each one (one row per problem)."""

    n_ratings: int
    n_participants: int
    n_trials: int
    n_items: int
    n_conditions: int
    out_of_range: int
    missing_scores: int
    duplicates: int
    missing_cells: int
    trials_without_100: int
    complete: bool
    """Every listener rated every condition of every trial."""
    balanced: bool
    """Every trial × condition cell has the same number of ratings."""
    trials_per_participant_min: int
    trials_per_participant_max: int
    issues: pd.DataFrame
    """Columns ``kind, participant, trial, condition, detail``."""

    @property
    def ok(self) -> bool:
        """No rating is out of range, missing or duplicated."""
        return not (self.out_of_range or self.missing_scores or self.duplicates)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("issues")
        out["ok"] = self.ok
        return out

    def lines(self) -> list[str]:
        """Human-readable summary, one finding per line."""
        design = "complete" if self.complete else "incomplete"
        balance = "balanced" if self.balanced else "unbalanced"
        per = (
            f"{self.trials_per_participant_min}"
            if self.trials_per_participant_min == self.trials_per_participant_max
            else f"{self.trials_per_participant_min}–{self.trials_per_participant_max}"
        )
        return [
            f"{self.n_ratings} ratings from {self.n_participants} listeners, {self.n_trials} trials "
            f"({self.n_items} items), {self.n_conditions} conditions; {per} trials per listener",
            f"design: {design}, {balance}",
            f"scores outside {SCORE_MIN:g}–{SCORE_MAX:g}: {self.out_of_range}",
            f"missing scores: {self.missing_scores}",
            f"duplicate ratings (same listener, trial and condition): {self.duplicates}",
            f"missing cells (condition not rated in a rated trial): {self.missing_cells}",
            f"listener × trial pages without a 100: {self.trials_without_100}",
        ]


def _issue_rows(frame: pd.DataFrame, kind: str, detail: pd.Series | str) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "kind": kind,
            "participant": frame["participant"].to_numpy(),
            "trial": frame["trial"].to_numpy(),
            "condition": frame["condition"].to_numpy() if "condition" in frame else pd.NA,
        }
    )
    out["detail"] = detail.to_numpy() if isinstance(detail, pd.Series) else detail
    return out


def validate_ratings(ratings: pd.DataFrame) -> ValidationSummary:
    """Summarise the problems of a tidy ratings frame (see :mod:`evaluation.ratings`)."""
    scores = ratings["score"]
    issues = []

    out_of_range = ratings[(scores < SCORE_MIN) | (scores > SCORE_MAX)]
    issues.append(
        _issue_rows(out_of_range, "out_of_range", "score " + out_of_range["score"].astype(str))
    )
    missing_scores = ratings[scores.isna()]
    issues.append(_issue_rows(missing_scores, "missing_score", "no score"))

    counts = ratings.groupby(_KEY, sort=False, observed=True).size()
    duplicated = counts[counts > 1].reset_index(name="n")
    issues.append(_issue_rows(duplicated, "duplicate", duplicated["n"].astype(str) + " ratings"))

    trial_conditions = ratings.groupby(["test", "trial"], observed=True)["condition"].unique()
    rated = ratings[["test", "participant", "trial"]].drop_duplicates()
    expected = rated.merge(
        trial_conditions.explode().rename("condition").reset_index(), on=["test", "trial"]
    )
    present = ratings[_KEY].drop_duplicates()
    cells = expected.merge(present, on=_KEY, how="left", indicator=True)
    missing_cells = cells[cells["_merge"] == "left_only"]
    issues.append(_issue_rows(missing_cells, "missing_cell", "condition not rated"))

    page_max = ratings.groupby(["test", "participant", "trial"], observed=True)["score"].max()
    without_100 = page_max[page_max < SCORE_MAX].reset_index()
    issues.append(
        _issue_rows(without_100, "no_100", "highest score " + without_100["score"].astype(str))
    )

    n_trials = ratings.groupby(["test", "trial"]).ngroups
    per_participant = rated.groupby(["test", "participant"]).size()
    cell_counts = ratings.groupby(["test", "trial", "condition"], observed=True)[
        "participant"
    ].nunique()
    n_participants = ratings.groupby(["test", "participant"]).ngroups
    complete = (
        missing_cells.empty
        and duplicated.empty
        and bool((per_participant == n_trials).all())
        and n_participants > 0
    )
    issues_frame = pd.concat(issues, ignore_index=True)
    return ValidationSummary(
        n_ratings=len(ratings),
        n_participants=n_participants,
        n_trials=n_trials,
        n_items=int(ratings["item"].nunique()),
        n_conditions=int(ratings["condition"].nunique()),
        out_of_range=len(out_of_range),
        missing_scores=len(missing_scores),
        duplicates=len(duplicated),
        missing_cells=len(missing_cells),
        trials_without_100=len(without_100),
        complete=complete,
        balanced=bool(cell_counts.nunique() <= 1),
        trials_per_participant_min=int(per_participant.min()) if len(per_participant) else 0,
        trials_per_participant_max=int(per_participant.max()) if len(per_participant) else 0,
        issues=issues_frame,
    )
