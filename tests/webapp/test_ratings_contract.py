"""The web app's exports and the analysis count the same ratings of a results database
(common.ratings_table): submitted rated pages only, excluded participants only when asked."""

import csv
import io

import pytest

from evaluation.ratings import read_database
from tests.webapp.participant_driver import Driver
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.exports import export
from webapp.storage import Participant

QUIET = "headphone_check: {enabled: false}\nvolume_check: false\nrandomise_trials: false\n"
COMPARED = ["participant", "trial", "condition", "score", "trial_position", "condition_position", "duration_ms",
            "plays", "submitted_at"]


def _stop_after_first_trial(driver: Driver, storage) -> None:
    while True:
        _, data = driver.current()
        assert driver.post(driver.answer(data, storage)).status_code == 200
        if data["kind"] == "trial":
            return


def _export(runtime, include_excluded: bool) -> list[list[str]]:
    text = export(runtime.storage, runtime.stim, "ratings", include_excluded)
    return [[row[c] for c in COMPARED] for row in csv.DictReader(io.StringIO(text))]


def _analysis(url: str, include_excluded: bool) -> list[list[str]]:
    frame = read_database(url, test="demo", include_excluded=include_excluded).ratings
    frame = frame.assign(score=frame["score"].map(lambda v: f"{v:g}"),
                         duration_ms=frame["duration_ms"].map(lambda v: f"{v:g}"))
    return frame[COMPARED].astype(str).values.tolist()


@pytest.mark.parametrize("include_excluded", [False, True])
def test_exports_and_analysis_count_the_same_ratings(stim_root, make_app, backend, include_excluded):
    app = make_app(make_stimulus_set(stim_root, n_trials=3, test_yaml=QUIET), **backend)
    runtime = app.extensions["earshot"].tests["demo"]
    storage = runtime.storage
    drivers = [Driver(app.test_client()) for _ in range(3)]
    for d in drivers:
        d.start()
    drivers[0].complete(storage)
    drivers[1].complete(storage)
    _stop_after_first_trial(drivers[2], storage)  # a training page and one of three trials submitted
    with storage.writing() as s:
        s.get(Participant, 2).excluded = True
    exported = _export(runtime, include_excluded)
    # 5 conditions per rated trial: 3 trials of the first, 1 of the third, and 3 of the excluded one if asked
    assert len(exported) == 5 * (3 + 1 + (3 if include_excluded else 0))
    assert not any(row[1].startswith("train") for row in exported)
    assert _analysis(str(storage.url), include_excluded) == exported
