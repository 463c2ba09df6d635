"""Render ``webapp/docs/mushra-page.png``: a MUSHRA page mid-rating in Debian's chromium.

    .venv/bin/python -m tests.webapp.browser.make_screenshot    (from the repository root)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.support.servers import LiveServer
from tests.support.system_tools import CHROMIUM, CHROMIUM_ARGS
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp import create_app

OUT = Path(__file__).resolve().parents[3] / "webapp" / "docs" / "mushra-page.png"


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    folder = make_stimulus_set(
        tmp / "stimuli", n_trials=6, duration_s=6.0, training=False,
        systems=("distilled", "non_distilled", "kd_q4", "slim_50", "slim_25"),
        test_yaml="title: Guitar amplifier models\nheadphone_check: {enabled: false}\nvolume_check: false\n",
    )
    app = create_app({"stimulus_sets": [str(folder)], "results_dir": str(tmp / "results")})
    server = LiveServer(app)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 940}, device_scale_factor=1)
        page.goto(f"{server.url}/t/demo/")
        page.check("#consent")
        with page.expect_navigation():
            page.click("#start")
        page.wait_for_selector("body[data-ready=true]")
        for slot, value in enumerate([72, 100, 18, 55, 41, 87, 63]):
            page.keyboard.press(str(slot + 1))
            page.keyboard.press("Home")
            for _ in range(value // 10):
                page.keyboard.press("PageUp")
            for _ in range(value % 10):
                page.keyboard.press("ArrowUp")
        box = page.locator("#waveform").bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + 0.3 * box["width"], y)
        page.mouse.down()
        page.mouse.move(box["x"] + 0.62 * box["width"], y, steps=5)
        page.mouse.up()
        page.keyboard.press("2")
        page.wait_for_timeout(700)
        page.mouse.move(5, 5)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(OUT), full_page=True)
        browser.close()
    server.stop()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
