"""Per-test settings read from the optional ``test.yaml`` beside a stimulus set's manifest.

Example ``stimuli/<set>/test.yaml`` (every key optional; unknown keys are errors)::

    title: Guitar amplifier models
    language: de
    trials_per_participant: 6
    enforce: {all_played: true, all_rated: true, one_at_100: true}
    headphone_check: {enabled: true, trials: 6, pass_threshold: 5, on_failure: stop}
    completion_code: C1A2B3
    completion_redirect: https://app.prolific.com/submissions/complete?cc={code}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from .errors import ConfigError
from .typed_config import from_dict

LANGUAGES = ("en", "de")


@dataclass(frozen=True)
class Enforcement:
    """What must be done on a MUSHRA page before Next is accepted (BS.1534-3 Attachment 1)."""

    all_played: bool = True
    all_rated: bool = True
    one_at_100: bool = True


@dataclass(frozen=True)
class HeadphoneCheck:
    """Anti-phase screening (Woods et al. 2017): pick the quietest of three 200 Hz tones."""

    enabled: bool = True
    trials: int = 6
    pass_threshold: int = 5
    on_failure: Literal["warn", "stop"] = "warn"
    tone_hz: float = 200.0


@dataclass(frozen=True)
class QuestionField:
    """One questionnaire field; ``label`` is a message-catalogue key or a literal text."""

    name: str
    label: str
    kind: Literal["text", "number", "choice", "textarea"] = "text"
    choices: tuple[str, ...] = ()
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None


DEFAULT_QUESTIONNAIRE = (
    QuestionField("age", "q_age", "number", required=False, minimum=16, maximum=120),
    QuestionField("hearing_problems", "q_hearing", "choice", ("no", "yes", "unsure"), required=True),
    QuestionField(
        "experience", "q_experience", "choice", ("none", "some", "expert"), required=True
    ),
    QuestionField("headphones_model", "q_headphones", "text"),
    QuestionField("comments", "q_comments", "textarea"),
)


@dataclass(frozen=True)
class StudySettings:
    """How one test is run; defaults follow BS.1534-3."""

    title: str = "Listening test"
    instructions: str | None = None
    """Extra text shown on the welcome page, after the catalogue's standard instructions."""
    language: Literal["en", "de"] = "en"
    randomise_trials: bool = True
    randomise_conditions: bool = True
    trials_per_participant: int | None = None
    """Rate a balanced random subset of this many trials; None: all trials."""
    enforce: Enforcement = field(default_factory=Enforcement)
    headphone_check: HeadphoneCheck = field(default_factory=HeadphoneCheck)
    volume_check: bool = True
    questionnaire: tuple[QuestionField, ...] = DEFAULT_QUESTIONNAIRE
    completion_code: str | None = None
    completion_redirect: str | None = None
    """URL shown/redirected to at the end; ``{code}`` is replaced by the completion code."""
    crowd_parameters: tuple[str, ...] = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
    new_participants_per_address: int = 20
    """At most this many participants may be created from one client address within
    ``new_participants_window_s`` (a 429 beyond). Raise it for a lab whose computers share one
    public address. Loopback clients are not limited: they are the experimenter's own tools, or a
    reverse proxy not declared in ``proxy_count``, where every participant shares one address."""
    new_participants_window_s: int = 60
    abandoned_after_s: int = 1800
    """A participant who has submitted no page this long after consenting is taken as gone: their
    trials stop counting for the balanced assignment of ``trials_per_participant``."""

    def __post_init__(self):
        if self.trials_per_participant is not None and self.trials_per_participant < 1:
            raise ConfigError(
                f"trials_per_participant: expected a positive integer, found {self.trials_per_participant}"
            )
        for name in ("new_participants_per_address", "new_participants_window_s", "abandoned_after_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: expected a positive integer, found {getattr(self, name)}")
        hc = self.headphone_check
        if hc.enabled and not 1 <= hc.pass_threshold <= hc.trials:
            raise ConfigError(
                f"headphone_check.pass_threshold: expected 1..{hc.trials} (the number of trials), "
                f"found {hc.pass_threshold}"
            )
        names = [q.name for q in self.questionnaire]
        if len(set(names)) != len(names):
            raise ConfigError(f"questionnaire: field names must be unique, found {names}")
        for q in self.questionnaire:
            if q.kind == "choice" and not q.choices:
                raise ConfigError(f"questionnaire field {q.name!r}: kind choice needs choices")


def load_study_settings(set_dir: Path) -> StudySettings:
    """``<set_dir>/test.yaml`` as :class:`StudySettings` (defaults when the file is absent)."""
    path = Path(set_dir) / "test.yaml"
    if not path.exists():
        return StudySettings()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return from_dict(StudySettings, data, where=str(path))
