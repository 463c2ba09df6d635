"""Issue 7's end-to-end test: a tiny study → ``python -m stimulus_sets build`` → ``python -m
webapp serve`` → chromium, driven with the keyboard, completes every page with scores chosen here →
the admin export → ``python -m evaluation report``; the report's per-condition numbers are the
hand-computed means of what was entered. The models, stimulus-set and evaluation verbs run in this process
through their CLIs' ``main`` (the same code as ``python -m``, without paying torch's import
twice); the server is a separate gunicorn process, and the web app's export also runs as
``python -m webapp export``.

Which condition a slider holds is found the way no part of the app could fake: the sound the
page loads for that slider is fetched and its bytes are matched against the WAV files of the
stimulus set on disk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from evaluation.__main__ import main as evaluation_main
from tests.e2e.e2e_support import ADMIN_PASSWORD, clean_env
from tests.support.browser_steps import READY, click_next, set_volume_with_mouse

pytestmark = pytest.mark.browser

# The scores the participant gives, per item and condition. The hidden reference gets 100 and the
# anchors stay low so that the lone listener passes post-screening and is analysed.
SCORES = {
    "guitar": {"hidden_reference": 100, "anchor_3k5": 12, "anchor_7k": 41, "distilled": 77, "non_distilled": 58},
    "bass": {"hidden_reference": 100, "anchor_3k5": 20, "anchor_7k": 47, "distilled": 70, "non_distilled": 63},
}
# Training pages are not analysed: scores far from the rated ones would show if they leaked in.
TRAINING_SCORES = {"hidden_reference": 100, "anchor_3k5": 95, "anchor_7k": 3, "distilled": 1, "non_distilled": 99}
# By hand: (guitar + bass) / 2 per condition.
EXPECTED_MEANS = {"hidden_reference": 100.0, "anchor_3k5": 16.0, "anchor_7k": 44.0, "distilled": 73.5,
                  "non_distilled": 60.5}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_by_hash(folder) -> tuple[dict[str, set[str]], dict[str, str]]:
    """From the set on disk: the condition ids each distinct WAV is stored as (the hidden
    reference shares its bytes with the reference) and the item of each rated trial's reference."""
    manifest = json.loads((folder / "manifest.json").read_text())
    conditions: dict[str, set[str]] = {}
    references: dict[str, str] = {}
    for trial in manifest["trials"]:
        base = folder / "audio" / trial["id"]
        for cond in trial["conditions"]:
            conditions.setdefault(sha256((base / cond["file"]).read_bytes()), set()).add(cond["id"])
        if not trial["training"]:
            references[sha256((base / trial["reference"]).read_bytes())] = trial["item"]
    return conditions, references


def quietest_tone(wav: bytes) -> int:
    """Index of the quietest of the three tones in a headphone-check round, heard on the left
    channel (over headphones the anti-phase tone is as loud as the normal one)."""
    audio, rate = sf.read(io.BytesIO(wav), dtype="float64", always_2d=True)
    frame = rate // 100  # 10 ms
    peaks = np.abs(audio[: len(audio) // frame * frame, 0]).reshape(-1, frame).max(axis=1)
    sounding = np.concatenate([[0], (peaks > 1e-3).astype(int), [0]])
    edges = np.flatnonzero(np.diff(sounding))
    tones = [peaks[a:b].max() for a, b in zip(edges[::2], edges[1::2], strict=True)]
    assert len(tones) == 3, f"expected 3 tones in a round, found {len(tones)}"
    return int(np.argmin(tones))


def set_slider_with_keyboard(page, slot: int, value: int) -> None:
    """Digit key ``slot + 1`` plays that sound and focuses its slider; Home/End and the arrows set it."""
    kb = page.keyboard
    kb.press(str(slot + 1))
    assert page.evaluate("document.activeElement.id") == f"slider-{slot}"
    if value >= 50:
        kb.press("End")
        for _ in range(100 - value):
            kb.press("ArrowDown")
    else:
        kb.press("Home")
        for _ in range(value):
            kb.press("ArrowUp")
    assert page.input_value(f"#slider-{slot}") == str(value)


def rate_page(page, conditions, references) -> tuple[str, str | None, dict[str, int]]:
    """Rate the MUSHRA page on screen; returns its kind, its item (rated pages) and the scores
    entered per condition id."""
    page.wait_for_selector(READY)
    data = page.evaluate("JSON.parse(document.getElementById('page-data').textContent)")
    fetch = page.context.request
    item = None
    if data["kind"] == "trial":
        reference = fetch.get(page.url.split("/t/")[0] + data["reference"])
        assert reference.ok
        item = references[sha256(reference.body())]
    wanted = SCORES[item] if item else TRAINING_SCORES
    page.keyboard.press("r")  # play the reference
    entered = {}
    for slot, sound in enumerate(data["sounds"]):
        response = fetch.get(page.url.split("/t/")[0] + sound["url"])
        assert response.ok
        ids = conditions[sha256(response.body())] - {"reference"}
        assert len(ids) == 1, f"conditions {sorted(ids)} are byte-identical WAVs: the test cannot tell them apart"
        (condition,) = ids
        set_slider_with_keyboard(page, slot, wanted[condition])
        entered[condition] = wanted[condition]
    assert sorted(entered) == sorted(wanted), "each condition on the page exactly once"
    click_next(page)
    return data["kind"], item, entered


def take_the_test(browser, served, conditions, references) -> dict:
    """A participant completes every page in a fresh browser context, then the experimenter logs
    in to the admin pages and downloads the exports. Runs on the browser's thread."""
    folder = served.folder
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    js_errors: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    try:
        # consent
        page.goto(f"{served.url}/t/{folder.name}/")
        page.check("#consent")
        page.click("#start")

        # headphone check, answered as a listener on headphones would: the tone heard as quietest
        page.wait_for_selector("#headphones-form")
        data = page.evaluate("JSON.parse(document.getElementById('page-data').textContent)")
        assert len(data["rounds"]) == 2
        for r, url in enumerate(data["rounds"]):
            response = page.context.request.get(served.url + url)
            assert response.ok
            page.click(f".play-round[data-round='{r}']")
            page.check(f"input[name='round-{r}'][value='{quietest_tone(response.body())}']")
        click_next(page)

        # volume
        set_volume_with_mouse(page, "-2")

        # training, then the two rated trials
        rated: dict[str, dict[str, int]] = {}
        kinds = []
        for _ in range(3):
            kind, item, entered = rate_page(page, conditions, references)
            kinds.append(kind)
            if kind == "trial":
                rated[item] = entered

        # questionnaire
        page.wait_for_selector("#questionnaire")
        page.fill("#q-age", "33")
        page.select_option("#q-hearing_problems", "no")
        page.select_option("#q-experience", "some")
        page.click("#next")
        page.wait_for_selector("text=Thank you!")

        # the experimenter downloads the exports from the admin pages
        page.goto(f"{served.url}/admin/login")
        page.fill("#password", ADMIN_PASSWORD)
        page.click("#login")
        page.wait_for_url("**/admin/")
        exports = {}
        for fmt in ("ratings", "participants"):
            response = page.request.get(f"{served.url}/admin/{folder.name}/export/{fmt}")
            assert response.ok, (fmt, response.status)
            exports[fmt] = response.text()
    finally:
        context.close()
    return {"kinds": kinds, "rated": rated, "exports": exports, "js_errors": js_errors}


@pytest.mark.slow
def test_study_to_report_through_a_browser(chromium, served, tmp_path):
    folder = served.folder
    conditions, references = files_by_hash(folder)
    assert len(references) == 2  # two rated trials, told apart by their references

    visit = chromium.run(take_the_test, served, conditions, references)
    assert visit["js_errors"] == []
    assert visit["kinds"] == ["training", "trial", "trial"]
    assert visit["rated"] == SCORES

    ratings = visit["exports"]["ratings"]
    export = tmp_path / "ratings.csv"
    export.write_text(ratings, encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(ratings)))
    # rated trials only, each sound once, with the score entered for it
    assert sorted((r["item"], r["condition"], int(r["score"])) for r in rows) == sorted(
        (item, condition, score) for item, scores in SCORES.items() for condition, score in scores.items()
    )
    # the command-line export of the same database says the same
    cli = subprocess.run(
        [sys.executable, "-m", "webapp", "export", str(folder), "--format", "ratings",
         "--results-dir", str(served.results_dir)],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == ratings
    (participant,) = csv.DictReader(io.StringIO(visit["exports"]["participants"]))
    assert (participant["pages_submitted"], participant["pages_total"]) == ("6", "6")
    assert (participant["headphone_correct"], participant["headphone_passed"]) == ("2", "True")
    assert float(participant["volume_gain_db"]) == -2.0
    assert (participant["q_age"], participant["q_hearing_problems"], participant["q_experience"]) == ("33", "no", "some")

    # the analyst's report on the export and the set
    out = tmp_path / "report"
    assert evaluation_main(["report", "--ratings", str(export), "--stimuli", str(folder), "--out", str(out),
                            "--no-pdf", "--permutations", "200", "--bootstrap", "200"]) == 0
    desc = pd.read_csv(out / "descriptives.csv")
    by_condition = desc[desc["level"] == "condition"].set_index("condition")
    assert sorted(by_condition.index) == sorted(EXPECTED_MEANS)
    for condition, mean in EXPECTED_MEANS.items():
        assert by_condition.loc[condition, "mean"] == pytest.approx(mean, abs=1e-9), condition
        assert by_condition.loc[condition, "n_listeners"] == 1
        assert by_condition.loc[condition, "n_ratings"] == 2
    by_item = desc[desc["level"] == "condition_item"].set_index(["item", "condition"])
    for item, scores in SCORES.items():
        for condition, score in scores.items():
            assert by_item.loc[(item, condition), "mean"] == pytest.approx(score, abs=1e-9), (item, condition)

    numbers = json.loads((out / "numbers.json").read_text())
    assert numbers["screening"]["listeners_after"] == 1 and numbers["screening"]["excluded"] == []
    means = {r["condition"]: r["mean"] for r in numbers["descriptives"]}
    assert means == pytest.approx(EXPECTED_MEANS, abs=1e-9)
