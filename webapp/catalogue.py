"""Participant-facing text: one JSON message catalogue per language in ``webapp/i18n/``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from .errors import ConfigError

CATALOGUE_DIR = Path(__file__).parent / "i18n"


@cache
def catalogue(language: str) -> dict[str, str]:
    path = CATALOGUE_DIR / f"{language}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        available = sorted(p.stem for p in CATALOGUE_DIR.glob("*.json"))
        raise ConfigError(f"language {language!r}: no catalogue {path}; available: {available}") from None


@cache
def languages() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in CATALOGUE_DIR.glob("*.json")))


class Translator:
    """``t("key", n=3)``: the message for ``key`` formatted with the keyword arguments.

    A string that is not a catalogue key is returned as is, so experimenters can write literal
    questionnaire labels in ``test.yaml``.
    """

    def __init__(self, language: str):
        self.language = language
        self.messages = catalogue(language)

    def __call__(self, key: str, **values) -> str:
        text = self.messages.get(key, key)
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self.messages
