"""Fixtures of the end-to-end test: a tiny trained study and its stimulus set, a real
``python -m webapp serve`` process on loopback, and Debian's chromium driven by Playwright."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "webapp"))

from e2e_support import GROUPS, ITEMS, STUDY, TEST_YAML, ServedTest  # noqa: E402
from webapp_support import CHROMIUM, CHROMIUM_ARGS, missing_tool  # noqa: E402

from models.cli import main as models_main  # noqa: E402


@pytest.fixture(scope="session")
def stimulus_set(tmp_path_factory) -> Path:
    """``stimuli/e2e``: the tiny study trained and rendered through the models CLI (2 items × 1
    group, 2 s excerpts, 1 training trial; ``--no-strict`` because 2 items are fewer than BS.1534's 5)."""
    root = tmp_path_factory.mktemp("e2e")
    study = root / "study.yaml"
    study.write_text(yaml.safe_dump({**STUDY, "output_dir": str(root / "zoo")}))
    assert models_main(["-q", "study", str(study)]) == 0
    config = root / "stimuli.yaml"
    config.write_text(yaml.safe_dump({"study": str(study), "items": ITEMS, "groups": GROUPS, "duration_s": 2.0,
                                      "training_trials": 1, "seed": 5}, sort_keys=False))
    folder = root / "stimuli" / "e2e"
    assert models_main(["-q", "stimuli", str(config), "--out", str(folder), "--no-strict"]) == 0
    (folder / "test.yaml").write_text(yaml.safe_dump(TEST_YAML))
    return folder


@pytest.fixture
def served(stimulus_set, tmp_path):
    server = ServedTest(stimulus_set, tmp_path / "results")
    yield server
    server.stop()
    assert server.process.returncode is not None


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists():
        missing_tool("chromium", "apt-get install chromium", "EARSHOT_REQUIRE_BROWSER")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium):
    """A fresh browser context (own cookies) and page; JavaScript errors fail the test."""
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
