"""Fixtures of the end-to-end test: a tiny trained study and its stimulus set, a real
``python -m webapp serve`` process on loopback, and Debian's chromium driven by Playwright."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.e2e.e2e_support import GROUPS, ITEMS, STUDY, TEST_YAML, ServedTest
from tests.support.system_tools import CHROMIUM, CHROMIUM_ARGS, missing_tool


@pytest.fixture(scope="session")
def stimulus_set(tmp_path_factory) -> Path:
    """``stimuli/e2e``: the tiny study trained through the models CLI and rendered through the
    stimulus-set CLI (2 items × 1 group, 2 s excerpts, 1 training trial; ``--no-strict`` because 2
    items are fewer than BS.1534's 5)."""
    from models.cli import main as models_main  # torch is imported only when the test runs
    from stimulus_sets.cli import main as stimuli_main

    root = tmp_path_factory.mktemp("e2e")
    study = root / "study.yaml"
    study.write_text(yaml.safe_dump({**STUDY, "output_dir": str(root / "zoo")}))
    assert models_main(["-q", "study", str(study)]) == 0
    config = root / "stimuli.yaml"
    config.write_text(yaml.safe_dump({"study_dir": str(root / "zoo"), "items": ITEMS, "groups": GROUPS, "duration_s": 2.0,
                                      "training_trials": 1, "seed": 5}, sort_keys=False))
    folder = root / "stimuli" / "e2e"
    assert stimuli_main(["-q", "build", str(config), "--out", str(folder), "--no-strict"]) == 0
    (folder / "test.yaml").write_text(yaml.safe_dump(TEST_YAML))
    return folder


@pytest.fixture
def served(stimulus_set, tmp_path):
    server = ServedTest(stimulus_set, tmp_path / "results")
    yield server
    server.stop()
    assert server.process.returncode is not None


class BrowserThread:
    """Debian's chromium under Playwright's sync API, owned by one worker thread.

    Playwright's sync API refuses to start while another instance runs on the same thread, and
    the web app tests keep a session-long one on the main thread; so every browser call of this
    test runs on this thread (``run``), which works whichever folder's tests run first."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="e2e-chromium")
        self._pool.submit(self._start).result()

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self.browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)

    def _stop(self) -> None:
        self.browser.close()
        self._playwright.stop()

    def run(self, fn, *args):
        """``fn(browser, *args)`` on the browser's thread; its result, or its exception re-raised here."""
        return self._pool.submit(fn, self.browser, *args).result()

    def close(self) -> None:
        try:
            self._pool.submit(self._stop).result()
        finally:
            self._pool.shutdown()


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        missing_tool("chromium", "apt-get install chromium", "EARSHOT_REQUIRE_BROWSER")
    browser = BrowserThread()
    yield browser
    browser.close()
