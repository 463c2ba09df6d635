"""Browser steps shared by the web app's browser tests and the end-to-end test (Playwright pages)."""

from __future__ import annotations

READY = "body[data-ready=true]"
"""Set by the MUSHRA page's script once every signal of the trial is decoded."""


def click_next(page) -> None:
    """Click Next and wait until the following page has loaded."""
    with page.expect_navigation():
        page.click("#next")


def set_volume_with_mouse(page, gain_db: str) -> None:
    """On the volume page: play the level-setting sound, then set the gain, then go on."""
    page.wait_for_selector("#volume-play")
    page.click("#volume-play")
    page.wait_for_selector("#volume-play:has-text('Stop')")
    page.fill("#gain", gain_db)
    click_next(page)
