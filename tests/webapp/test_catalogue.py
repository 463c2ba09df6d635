"""The message catalogues: every language has every message, with the same placeholders."""

from __future__ import annotations

import re

from webapp.catalogue import Translator, catalogue, languages
from webapp.study import LANGUAGES


def test_catalogues_match_the_settings_and_each_other():
    assert set(languages()) == set(LANGUAGES) == {"en", "de"}
    english = catalogue("en")
    for lang in languages():
        other = catalogue(lang)
        assert set(other) == set(english), f"{lang}: keys differ from en"
        for key, text in english.items():
            assert set(re.findall(r"{(\w+)}", other[key])) == set(re.findall(r"{(\w+)}", text)), (lang, key)


def test_translator_formats_and_passes_literals_through():
    t = Translator("de")
    assert t("trial_heading", n=2, total=7) == "Seite 2 von 7"
    assert t("Wie laut war es?") == "Wie laut war es?"
    assert t.has("q_age") and not t.has("Wie laut war es?")
