"""End-to-end: Debian's chromium (Playwright) against a real threaded server on loopback.

Participants complete whole tests with the mouse and with the keyboard; switching keeps the
playback position; enforcement blocks Next; a reload resumes; the admin export holds exactly the
scores entered on the page.
"""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from tests.support.browser_steps import READY, click_next, set_volume_with_mouse
from tests.webapp.admin_credentials import ADMIN_PASSWORD
from tests.webapp.stimulus_sets import make_stimulus_set
from webapp.headphones import answer_key
from webapp.storage import Page, Rating

# Chromium drives every test here (a few seconds each): all of them are in the full suite only.
pytestmark = [pytest.mark.browser, pytest.mark.slow]

def start(page, server, query=""):
    page.goto(f"{server.url}/t/demo/{query}")
    page.check("#consent")
    page.click("#start")


def slot_count(page) -> int:
    return page.locator("input.slider").count()


def heading(page) -> str:
    return page.inner_text("#page-heading")


def set_slider_with_mouse(page, slot: int, fraction: float) -> int:
    """Click a vertical slider at ``fraction`` of its height from the bottom; returns its value."""
    box = page.locator(f"#slider-{slot}").bounding_box()
    x = box["x"] + box["width"] / 2
    if fraction >= 1:
        # drag the thumb beyond the top end: exactly 100
        page.mouse.move(x, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(x, box["y"] - 40, steps=4)
        page.mouse.up()
    else:
        page.mouse.click(x, box["y"] + box["height"] * (1 - fraction))
    return int(page.input_value(f"#slider-{slot}"))


def rate_page_with_mouse(page, fractions) -> dict[int, int]:
    page.wait_for_selector(READY)
    entered = {}
    page.click("#ref-button")
    for slot in range(slot_count(page)):
        page.click(f".sound-btn[data-slot='{slot}']")
        assert page.is_enabled(f"#slider-{slot}")
        others = [s for s in range(slot_count(page)) if s != slot]
        assert all(page.is_disabled(f"#slider-{s}") for s in others)
        entered[slot] = set_slider_with_mouse(page, slot, fractions[slot])
    return entered


def admin_ratings(page, server) -> list[dict]:
    page.goto(f"{server.url}/admin/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("#login")
    page.wait_for_url("**/admin/")
    response = page.request.get(f"{server.url}/admin/demo/export/ratings")
    assert response.ok
    return list(csv.DictReader(io.StringIO(response.text())))


@pytest.mark.slow
def test_mouse_participant_whole_test_and_export(make_app, stim_root, live_server, browser_page):
    folder = make_stimulus_set(stim_root, n_trials=2, duration_s=2.0, test_yaml="headphone_check: {trials: 2, pass_threshold: 2}\n")
    app = make_app(folder)
    server = live_server(app)
    storage = app.extensions["earshot"].tests["demo"].storage
    page = browser_page
    start(page, server, "?PROLIFIC_PID=mouse1")

    # headphone check: the right answers come from the server's stored key
    page.wait_for_selector("#headphones-form")
    with storage.reading() as s:
        key = answer_key(s.scalar(select(Page.setup).where(Page.kind == "headphones"))["rounds"])
    for r, answer in enumerate(key):
        page.click(f".play-round[data-round='{r}']")
        page.check(f"input[name='round-{r}'][value='{answer}']")
    click_next(page)

    set_volume_with_mouse(page, "-2")

    entered: dict[int, dict[int, int]] = {}
    fractions = [1.0, 0.3, 0.55, 0.12, 0.8]
    for _ in range(3):  # training + 2 trials
        page.wait_for_selector(READY)
        title = heading(page)
        scores = rate_page_with_mouse(page, fractions)
        assert sorted(scores.values())[-1] == 100 and len(set(scores.values())) == 5
        if title.startswith("Page"):
            entered[int(title.split()[1])] = scores
        click_next(page)
        fractions = fractions[1:] + fractions[:1]

    page.wait_for_selector("#questionnaire")
    page.fill("#q-age", "41")
    page.select_option("#q-hearing_problems", "no")
    page.select_option("#q-experience", "expert")
    page.click("#next")
    page.wait_for_selector("text=Thank you!")

    with storage.reading() as s:
        volume = s.scalar(select(Page.answers).where(Page.kind == "volume"))
    assert volume["gain_db"] == -2.0
    rows = admin_ratings(page, server)
    got = {}
    for row in rows:
        got.setdefault(int(row["trial_position"]), {})[int(row["condition_position"]) - 1] = int(row["score"])
    assert got == entered
    assert all(int(r["plays"]) >= 1 for r in rows)


@pytest.mark.slow
def test_keyboard_participant_whole_test(make_app, stim_root, live_server, browser_page):
    folder = make_stimulus_set(
        stim_root, n_trials=1, duration_s=2.0, training=False,
        test_yaml="headphone_check: {enabled: false}\n",
    )
    app = make_app(folder)
    server = live_server(app)
    storage = app.extensions["earshot"].tests["demo"].storage
    page = browser_page
    kb = page.keyboard

    def tab_to(selector: str, limit: int = 40):
        for _ in range(limit):
            kb.press("Tab")
            if page.evaluate("(sel) => document.activeElement === document.querySelector(sel)", selector):
                return
        raise AssertionError(f"Tab never reached {selector}")

    page.goto(f"{server.url}/t/demo/")
    tab_to("#consent")
    kb.press("Space")
    tab_to("#start")
    kb.press("Enter")

    page.wait_for_selector("#volume-play")
    tab_to("#volume-play")
    kb.press("Enter")
    page.wait_for_selector("#volume-play:has-text('Stop')")  # decoded and playing
    tab_to("#gain")
    kb.press("ArrowRight")
    tab_to("#next")
    kb.press("Enter")

    page.wait_for_selector(READY)
    kb.press("r")
    assert page.evaluate("earshotPlayer.current") == -1 and page.evaluate("earshotPlayer.playing")
    wanted = {0: 100, 1: 37, 2: 64, 3: 5, 4: 90}
    for slot, value in wanted.items():
        kb.press(str(slot + 1))
        assert page.evaluate("earshotPlayer.current") == slot
        assert page.evaluate("document.activeElement.id") == f"slider-{slot}"
        kb.press("Home")  # 0
        if value == 100:
            kb.press("End")
        else:
            for _ in range(value):
                kb.press("ArrowUp")
        assert page.input_value(f"#slider-{slot}") == str(value)
        assert page.get_attribute(f"#slider-{slot}", "aria-valuetext") == f"{value} of 100"
    kb.press(" ")
    assert page.evaluate("earshotPlayer.playing") is False
    tab_to("#next")
    kb.press("Enter")

    page.wait_for_selector("#questionnaire")
    tab_to("#q-age")
    kb.type("29")
    tab_to("#q-hearing_problems")
    kb.type("n")
    tab_to("#q-experience")
    kb.type("s")
    tab_to("#next")
    kb.press("Enter")
    page.wait_for_selector("text=Thank you!")
    with storage.reading() as s:
        stored = {r.condition_position - 1: r.score for r in s.scalars(select(Rating))}
        answers = s.scalar(select(Page.answers).where(Page.kind == "questionnaire"))
    assert stored == wanted
    assert answers == {"age": 29, "hearing_problems": "no", "experience": "some"}


@pytest.mark.slow
def test_switching_keeps_position_and_loops(make_app, stim_root, live_server, browser_page):
    folder = make_stimulus_set(stim_root, n_trials=1, duration_s=4.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\n")
    server = live_server(make_app(folder))
    page = browser_page
    audio_requests = []
    page.on("request", lambda r: audio_requests.append(r.url) if "/audio/" in r.url else None)
    start(page, server)
    page.wait_for_selector(READY)
    page.click(".sound-btn[data-slot='0']")
    page.wait_for_function("() => earshotPlayer.position() > 0.8")
    before = page.evaluate("[earshotPlayer.position(), earshotPlayer.ctx.currentTime]")
    page.click(".sound-btn[data-slot='2']")
    after = page.evaluate("[earshotPlayer.position(), earshotPlayer.ctx.currentTime, earshotPlayer.current]")
    assert after[2] == 2
    elapsed = after[1] - before[1]
    # the new sound continues from where the old one was (not from the start)
    assert after[0] == pytest.approx(before[0] + elapsed, abs=0.03)
    page.wait_for_timeout(300)
    later = page.evaluate("[earshotPlayer.position(), earshotPlayer.ctx.currentTime]")
    assert later[0] == pytest.approx(after[0] + (later[1] - after[1]), abs=0.03)
    page.keyboard.press("r")
    ref = page.evaluate("[earshotPlayer.position(), earshotPlayer.ctx.currentTime, earshotPlayer.current]")
    assert ref[2] == -1 and ref[0] == pytest.approx(later[0] + (ref[1] - later[1]), abs=0.03)

    # drag on the waveform from 25 % to 50 %: a loop of 1.0 s of the 4 s excerpt
    box = page.locator("#waveform").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 0.25 * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.5 * box["width"], y, steps=5)
    page.mouse.up()
    start_s, end_s = page.evaluate("[earshotPlayer.loopStart, earshotPlayer.loopEnd]")
    assert start_s == pytest.approx(1.0, abs=0.02) and end_s == pytest.approx(2.0, abs=0.02)
    positions = []
    for _ in range(12):  # 1.8 s: at least one pass through the loop boundary
        page.wait_for_timeout(150)
        positions.append(page.evaluate("earshotPlayer.position()"))
    assert all(start_s - 1e-6 <= p <= end_s + 1e-6 for p in positions)
    assert any(b < a for a, b in zip(positions, positions[1:], strict=False)), "playback never wrapped to the loop start"
    # a tiny drag still makes a loop of at least 500 ms
    page.mouse.move(box["x"] + 0.7 * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.76 * box["width"], y, steps=2)
    page.mouse.up()
    start_s, end_s = page.evaluate("[earshotPlayer.loopStart, earshotPlayer.loopEnd]")
    assert end_s - start_s >= 0.5 - 1e-9
    assert page.evaluate("earshotState.loopUsed") is True
    # every signal was fetched and decoded once, however often it was played
    assert len(audio_requests) == len(set(audio_requests)) == 1 + 5


@pytest.mark.slow
def test_enforcement_blocks_next_and_reload_resumes(make_app, stim_root, live_server, browser_page):
    folder = make_stimulus_set(stim_root, n_trials=2, duration_s=2.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\nrandomise_trials: false\n")
    app = make_app(folder)
    server = live_server(app)
    storage = app.extensions["earshot"].tests["demo"].storage
    page = browser_page
    start(page, server)
    page.wait_for_selector(READY)
    assert all("unset" in page.get_attribute(f"#slider-{s}", "class") for s in range(5))
    assert all(page.is_disabled(f"#slider-{s}") for s in range(5))
    page.click("#next")
    message = page.inner_text("#message")
    assert "Not yet played: A, B, C, D, E." in message and "Not yet rated: A, B, C, D, E." in message
    rate_page_with_mouse(page, [0.5, 0.3, 0.4, 0.2, 0.6])
    page.click("#next")
    assert page.inner_text("#message") == "Rate at least one sound 100: the reference is hidden among the sounds."
    with storage.reading() as s:
        assert s.scalars(select(Rating)).all() == []
    title = heading(page)

    # unsaved answers: the beforeunload guard asks before a reload loses them
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.type), d.accept()))
    page.reload()
    page.wait_for_selector(READY)
    assert dialogs == ["beforeunload"]
    assert heading(page) == title  # same page, answers not stored
    scores = rate_page_with_mouse(page, [1.0, 0.3, 0.4, 0.2, 0.6])
    click_next(page)
    page.wait_for_selector(READY)
    assert heading(page).startswith("Page 2 of 2")
    page.reload()
    page.wait_for_selector(READY)
    assert heading(page).startswith("Page 2 of 2")
    with storage.reading() as s:
        stored = {r.condition_position - 1: r.score for r in s.scalars(select(Rating))}
    assert stored == scores
    # reopening the link also resumes at page 2
    page.goto(f"{server.url}/t/demo/")
    page.wait_for_selector(READY)
    assert heading(page).startswith("Page 2 of 2")


@pytest.mark.slow
def test_network_failure_keeps_answers_and_retries(make_app, stim_root, live_server, browser_page):
    folder = make_stimulus_set(stim_root, n_trials=1, duration_s=1.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\nquestionnaire: []\n")
    app = make_app(folder)
    server = live_server(app)
    storage = app.extensions["earshot"].tests["demo"].storage
    page = browser_page
    start(page, server)
    scores = rate_page_with_mouse(page, [1.0, 0.3, 0.4, 0.2, 0.6])
    failures = {"n": 0}

    def flaky(route):
        # the first two attempts fail after the request left the page; the third goes through
        if failures["n"] < 2:
            failures["n"] += 1
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/page", flaky)
    page.click("#next")
    page.wait_for_selector("#message:has-text('network problem')")
    page.wait_for_selector("text=Thank you!", timeout=15000)
    assert failures["n"] == 2
    with storage.reading() as s:
        stored = {r.condition_position - 1: r.score for r in s.scalars(select(Rating))}
    assert stored == scores


@pytest.mark.slow
def test_phone_sized_layout(make_app, stim_root, live_server, chromium):
    folder = make_stimulus_set(stim_root, n_trials=1, duration_s=1.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\n")
    server = live_server(make_app(folder))
    context = chromium.new_context(viewport={"width": 375, "height": 740}, has_touch=True, is_mobile=True)
    page = context.new_page()
    try:
        start(page, server)
        page.wait_for_selector(READY)
        # nothing wider than the screen: the page does not scroll sideways
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        for slot in range(5):
            box = page.locator(f".sound-btn[data-slot='{slot}']").bounding_box()
            assert box["width"] >= 40 and box["height"] >= 40 and box["x"] + box["width"] <= 375
        page.tap(".sound-btn[data-slot='1']")
        assert page.evaluate("earshotPlayer.current") == 1
    finally:
        context.close()


RENDER_SWITCH = """
async () => {
  const rate = 48000;
  const ctx = new OfflineAudioContext(1, rate, rate);
  const constant = (v) => { const b = ctx.createBuffer(1, rate, rate); b.getChannelData(0).fill(v); return b; };
  const player = new EarshotPlayer(ctx, [constant(0.5), constant(1), constant(-1)], 0);
  player.play(0);
  ctx.suspend(0.5).then(() => { player.switchTo(1); ctx.resume(); });
  const out = await ctx.startRendering();
  return Array.from(out.getChannelData(0));
}
"""


@pytest.mark.slow
def test_switch_is_a_5ms_raised_cosine_fade_out_then_in(make_app, stim_root, live_server, browser_page):
    """Rendered offline: sound +1 plays, then a switch to sound -1. The output must fall from +1 to
    0 along a 5 ms raised cosine and only then rise to -1 along another: 10 ms in all. A cross-fade
    would pass through zero at once and take 5 ms."""
    import numpy as np

    folder = make_stimulus_set(stim_root, n_trials=1, duration_s=1.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\n")
    server = live_server(make_app(folder))
    page = browser_page
    start(page, server)
    page.wait_for_selector(READY)
    y = np.array(page.evaluate(RENDER_SWITCH))
    rate, fade = 48000, 240  # 5 ms
    n = np.arange(fade + 1)
    rising = 0.5 - 0.5 * np.cos(np.pi * n / fade)

    def best_fit(segment_start: int, shape: np.ndarray) -> float:
        """Smallest max-deviation of ``y`` from ``shape`` placed within ±3 samples of the start
        (the audio clock snaps events to whole samples)."""
        return min(
            float(np.max(np.abs(y[segment_start + k:segment_start + k + len(shape)] - shape)))
            for k in range(-3, 4)
        )

    # start of playback: silence, then a raised-cosine fade-in to +1
    onset = int(np.argmax(np.abs(y) > 1e-6)) - 1
    assert onset == pytest.approx(0.01 * rate, abs=130)  # scheduled 10 ms ahead, within one render quantum
    assert best_fit(onset, rising) < 2e-3
    # the switch: from the last full-level +1 sample to the first full-level -1 sample
    last_a = int(np.nonzero(y > 0.9999)[0][-1])
    first_b = int(np.nonzero(y < -0.9999)[0][0])
    assert first_b - last_a == pytest.approx(2 * fade, abs=4)
    zero = last_a + int(np.argmax(y[last_a:] <= 0))
    assert best_fit(zero - fade, rising[::-1]) < 2e-3  # 5 ms raised-cosine fade-out of +1 ...
    assert best_fit(zero, -rising) < 2e-3  # ... then, only then, the 5 ms fade-in of -1
    # and the transition falls steadily, without a bump where two signals would overlap
    assert np.all(np.diff(y[last_a:first_b + 1]) <= 1e-7)


RENDER_LOOP = """
async () => {
  const rate = 48000;
  const ctx = new OfflineAudioContext(1, Math.round(rate * 1.6), rate);
  const ramp = ctx.createBuffer(1, rate, rate);
  const data = ramp.getChannelData(0);
  for (let i = 0; i < rate; i++) data[i] = 0.2 + 0.8 * i / rate;
  const player = new EarshotPlayer(ctx, [ramp, ramp], 0);
  player.setLoop(0.2, 0.7);
  player.play(0);
  // Let the page's timers run at the pace of the audio: pause rendering every 50 ms of audio
  // for 50 ms of real time, as a real-time context would.
  for (let t = 0.05; t < 1.6; t += 0.05) {
    ctx.suspend(Math.round(t * rate / 128) * 128 / rate).then(() => setTimeout(() => ctx.resume(), 50));
  }
  const out = await ctx.startRendering();
  return Array.from(out.getChannelData(0));
}
"""


@pytest.mark.slow
def test_loop_boundary_fades_out_then_in(make_app, stim_root, live_server, browser_page):
    """A ramp looped over 0.2–0.7 s: at each pass the output fades out (5 ms raised cosine) to
    silence and only then fades in again at the loop start's level."""
    import numpy as np

    folder = make_stimulus_set(stim_root, n_trials=1, duration_s=1.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\n")
    server = live_server(make_app(folder))
    page = browser_page
    start(page, server)
    page.wait_for_selector(READY)
    y = np.array(page.evaluate(RENDER_LOOP))
    rate, fade = 48000, 240
    n = np.arange(fade)
    rising = 0.5 - 0.5 * np.cos(np.pi * n / fade)
    # silent samples inside the played part mark the boundaries (play starts 10 ms in)
    onset = int(np.argmax(y > 1e-6))
    quiet = np.nonzero(np.abs(y[onset + fade:]) < 1e-3)[0] + onset + fade
    boundaries = [int(q) for i, q in enumerate(quiet) if i == 0 or q - quiet[i - 1] > 1]
    assert len(boundaries) >= 2, "the loop did not repeat"
    period = np.diff(boundaries)
    assert np.all(np.abs(period - 0.5 * rate) <= 2)  # one pass = the 0.5 s loop region
    ramp_end = 0.2 + 0.8 * (0.7 - (fade - n) / rate)  # the ramp over the last 5 ms of the loop
    ramp_start = 0.2 + 0.8 * (0.2 + n / rate)  # and over its first 5 ms
    fade_out = ramp_end * rising[::-1]
    fade_in = ramp_start * rising
    for b in boundaries[:2]:
        # fade-out of the loop's end, then fade-in of its start, back to back: no overlap
        # (the boundary is placed within a few samples: the silence test finds it early)
        error = min(
            max(np.max(np.abs(y[b + k - fade:b + k] - fade_out)), np.max(np.abs(y[b + k:b + k + fade] - fade_in)))
            for k in range(-2, 8)
        )
        assert error < 3e-3


@pytest.mark.slow
def test_stale_second_tab_moves_on_instead_of_failing(make_app, stim_root, live_server, chromium):
    folder = make_stimulus_set(stim_root, n_trials=2, duration_s=1.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\nrandomise_trials: false\n")
    app = make_app(folder)
    server = live_server(app)
    context = chromium.new_context()
    try:
        first = context.new_page()
        start(first, server)
        second = context.new_page()
        second.goto(f"{server.url}/t/demo/page")
        for page in (first, second):
            page.wait_for_selector(READY)
            assert heading(page).startswith("Page 1 of 2")
        entered = rate_page_with_mouse(first, [1.0, 0.3, 0.4, 0.2, 0.6])
        click_next(first)
        rate_page_with_mouse(second, [1.0, 0.5, 0.5, 0.5, 0.5])
        click_next(second)  # refused as already submitted: the tab goes to the current page
        second.wait_for_selector(READY)
        assert heading(second).startswith("Page 2 of 2")
        with app.extensions["earshot"].tests["demo"].storage.reading() as s:
            stored = {r.condition_position - 1: r.score for r in s.scalars(select(Rating))}
        assert stored == entered  # the first tab's answers, once; the stale tab stored nothing
    finally:
        context.close()


@pytest.mark.slow
def test_failed_headphone_check_warns_then_continues(make_app, stim_root, live_server, browser_page):
    folder = make_stimulus_set(stim_root, n_trials=1, duration_s=1.0, training=False, test_yaml="headphone_check: {trials: 2, pass_threshold: 2, on_failure: warn}\nvolume_check: false\nlanguage: de\n")
    app = make_app(folder)
    server = live_server(app)
    storage = app.extensions["earshot"].tests["demo"].storage
    page = browser_page
    start(page, server)
    page.wait_for_selector("#headphones-form")
    with storage.reading() as s:
        key = answer_key(s.scalar(select(Page.setup).where(Page.kind == "headphones"))["rounds"])
    page.click("#next")
    assert page.inner_text("#message") == "Bitte spielen Sie jede Runde ab und wählen Sie jeweils eine Antwort."
    for r, answer in enumerate(key):
        page.click(f".play-round[data-round='{r}']")
        page.check(f"input[name='round-{r}'][value='{(answer + 1) % 3}']")  # always wrong
    page.click("#next")
    page.wait_for_selector("#message:has-text('Kopfhörer')")
    assert "keine Kopfhörer" in page.inner_text("#message")
    click_next(page)
    page.wait_for_selector(READY)
    assert heading(page) == "Seite 1 von 1"
    with storage.reading() as s:
        answers = s.scalar(select(Page.answers).where(Page.kind == "headphones"))
    assert answers["correct"] == 0 and answers["passed"] is False


@pytest.mark.slow
def test_unsaved_ratings_survive_a_reload(make_app, stim_root, live_server, browser_page):
    folder = make_stimulus_set(stim_root, n_trials=1, duration_s=1.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\nquestionnaire: []\n")
    app = make_app(folder)
    server = live_server(app)
    page = browser_page
    page.on("dialog", lambda d: d.accept())
    start(page, server)
    page.wait_for_selector(READY)
    first = {}
    for slot, fraction in [(0, 1.0), (1, 0.3), (2, 0.6)]:
        page.click(f".sound-btn[data-slot='{slot}']")
        first[slot] = set_slider_with_mouse(page, slot, fraction)
    plays = page.evaluate("earshotState.plays")
    page.reload()
    page.wait_for_selector(READY)
    assert page.evaluate("earshotState.plays") == plays
    for slot, value in first.items():
        assert page.input_value(f"#slider-{slot}") == str(value)
        assert page.inner_text(f"#score-{slot}") == str(value)
        assert "unset" not in page.get_attribute(f"#slider-{slot}", "class")
    assert "unset" in page.get_attribute("#slider-3", "class")
    # finish the page: the restored answers and the new ones are what gets stored
    rest = {}
    for slot, fraction in [(3, 0.2), (4, 0.8)]:
        page.click(f".sound-btn[data-slot='{slot}']")
        rest[slot] = set_slider_with_mouse(page, slot, fraction)
    click_next(page)
    page.wait_for_selector("text=Thank you!")
    with app.extensions["earshot"].tests["demo"].storage.reading() as s:
        stored = {r.condition_position - 1: r.score for r in s.scalars(select(Rating))}
    assert stored == first | rest
    assert not page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('earshot-draft'))")


def stored_scores(app) -> dict[int, int]:
    with app.extensions["earshot"].tests["demo"].storage.reading() as s:
        return {r.condition_position - 1: r.score for r in s.scalars(select(Rating))}


def height_of(page, slot: int, value: int) -> tuple[float, float]:
    """Where a participant aims to rate ``value``: that height on the slider, from the bottom. (The
    thumb's own size shifts the browser's mapping by well under one point near mid-scale.)"""
    box = page.locator(f"#slider-{slot}").bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] * (1 - value / 100)


@pytest.mark.parametrize("pointer", ["mouse", "touch"])
def test_first_press_near_mid_scale_records_the_value_under_the_pointer(make_app, stim_root, live_server, chromium, pointer):
    """An unset slider holds the DOM value 50 under an invisible thumb; a first press within a few
    points of 50 used to grab that thumb and store exactly 50 whatever the participant aimed at."""
    folder = make_stimulus_set(stim_root, n_trials=1, duration_s=1.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\nquestionnaire: []\n")
    app = make_app(folder)
    server = live_server(app)
    touch = pointer == "touch"
    context = chromium.new_context(viewport={"width": 1100, "height": 900}, has_touch=touch)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        start(page, server)
        page.wait_for_selector(READY)
        aimed = {0: 48, 1: 50, 2: 52, 3: 100, 4: 45}
        for slot, value in aimed.items():
            button = f".sound-btn[data-slot='{slot}']"
            if touch:
                page.tap(button)
            else:
                page.click(button)
            assert page.evaluate("earshotPlayer.current") == slot
            if value == 100:
                set_slider_with_mouse(page, slot, 1.0)
                continue
            x, y = height_of(page, slot, value)
            if touch:
                page.touchscreen.tap(x, y)
            else:
                page.mouse.click(x, y)
            assert "unset" not in page.get_attribute(f"#slider-{slot}", "class")
        click_next(page)
        page.wait_for_selector("text=Thank you!")
        stored = stored_scores(app)
        for slot, value in aimed.items():
            assert stored[slot] == pytest.approx(value, abs=1), (slot, stored)
        assert not errors, f"JavaScript errors: {errors}"
    finally:
        context.close()


def test_first_press_is_ignored_on_a_slider_whose_sound_is_not_playing(make_app, stim_root, live_server, browser_page):
    """BS.1534-3: only the control of the sound being heard moves, also on its very first press."""
    folder = make_stimulus_set(stim_root, n_trials=1, duration_s=1.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\n")
    server = live_server(make_app(folder))
    page = browser_page
    start(page, server)
    page.wait_for_selector(READY)
    page.click(".sound-btn[data-slot='0']")
    x, y = height_of(page, 1, 49)
    page.mouse.click(x, y)
    assert page.evaluate("earshotState.scores") == [None] * 5
    assert "unset" in page.get_attribute("#slider-1", "class")
    assert page.input_value("#slider-1") == "50"


@pytest.mark.slow
def test_closed_tab_reopened_restores_unsaved_ratings(make_app, stim_root, live_server, chromium):
    """Closing the tab (not a reload) and opening the participant's link again in the same browser
    brings back the page's ratings, plays and loop; another participant in that browser sees none
    of them; the saved page holds the restored ratings and the draft is gone once saved."""
    folder = make_stimulus_set(stim_root, n_trials=1, duration_s=2.0, training=False, test_yaml="headphone_check: {enabled: false}\nvolume_check: false\nquestionnaire: []\n")
    app = make_app(folder)
    server = live_server(app)
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    context.on("weberror", lambda e: errors.append(str(e.error)))
    try:
        page = context.new_page()
        start(page, server)
        page.wait_for_selector(READY)
        first = {}
        for slot, fraction in [(0, 1.0), (1, 0.3), (2, 0.7)]:
            page.click(f".sound-btn[data-slot='{slot}']")
            first[slot] = set_slider_with_mouse(page, slot, fraction)
        box = page.locator("#waveform").bounding_box()
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + 0.25 * box["width"], y)
        page.mouse.down()
        page.mouse.move(box["x"] + 0.75 * box["width"], y, steps=4)
        page.mouse.up()
        page.click("#play-toggle")  # pause: the listening time so far is in the draft
        plays = page.evaluate("earshotState.plays")
        loop = page.evaluate("[earshotPlayer.loopStart, earshotPlayer.loopEnd]")
        page.close()

        # another participant on the same test in this browser starts with nothing of it
        mine = context.cookies()
        context.clear_cookies()
        other = context.new_page()
        start(other, server)
        other.wait_for_selector(READY)
        assert other.evaluate("earshotState.scores") == [None] * 5
        assert other.evaluate("earshotState.plays") == [0] * 5
        assert all("unset" in other.get_attribute(f"#slider-{s}", "class") for s in range(5))
        other.close()

        context.clear_cookies()
        context.add_cookies(mine)
        page = context.new_page()
        page.goto(f"{server.url}/t/demo/")
        page.wait_for_selector(READY)
        for slot, value in first.items():
            assert page.input_value(f"#slider-{slot}") == str(value)
            assert page.inner_text(f"#score-{slot}") == str(value)
            assert "unset" not in page.get_attribute(f"#slider-{slot}", "class")
        assert all("unset" in page.get_attribute(f"#slider-{s}", "class") for s in (3, 4))
        assert page.evaluate("earshotState.plays") == plays
        assert page.evaluate("[earshotPlayer.loopStart, earshotPlayer.loopEnd]") == pytest.approx(loop, abs=1e-6)
        assert page.evaluate("earshotState.loopUsed") is True
        # the restored sounds count as played: only the two new ones need playing now
        rest = {}
        for slot, fraction in [(3, 0.2), (4, 0.55)]:
            page.click(f".sound-btn[data-slot='{slot}']")
            rest[slot] = set_slider_with_mouse(page, slot, fraction)
        click_next(page)
        page.wait_for_selector("text=Thank you!")
        assert stored_scores(app) == first | rest
        with app.extensions["earshot"].tests["demo"].storage.reading() as s:
            listened = {r.condition_position - 1: r.listening_ms for r in s.scalars(select(Rating))}
        assert all(listened[slot] > 0 for slot in first)
        assert not page.evaluate("Object.keys(localStorage).filter((k) => k.startsWith('earshot-draft'))")
        assert not errors, f"JavaScript errors: {errors}"
    finally:
        context.close()
