/* The MUSHRA page (ITU-R BS.1534-3): Web Audio player with seamless switching, a loop region on
   the reference's waveform, sliders that only move for the sound being heard, enforcement,
   keyboard control and saving. Sounds are known only by opaque tokens and neutral letters. */
(function () {
  "use strict";

  const E = window.Earshot;
  const data = E.data;
  const t = E.t;
  const FADE_S = 0.005;          // 5 ms raised-cosine fade at every switch and loop boundary
  const MIN_LOOP_S = 0.5;        // BS.1534-3: loops of at least 500 ms
  const LEAD_S = 0.01;           // schedule slightly ahead of the audio clock
  const REFERENCE = -1;
  const n = data.sounds.length;
  const labels = data.sounds.map((s) => s.label);

  function raisedCosine(rising) {
    const points = 128;
    const curve = new Float32Array(points);
    for (let i = 0; i < points; i++) {
      const v = 0.5 - 0.5 * Math.cos((Math.PI * i) / (points - 1));
      curve[rising ? i : points - 1 - i] = v;
    }
    return curve;
  }
  const FADE_IN = raisedCosine(true);
  const FADE_OUT = raisedCosine(false);
  function envelope(sinceStart, untilEnd) {
    // Gain of a segment at a moment: inside its fade-in or fade-out, else 1.
    const rc = (x) => (x >= FADE_S ? 1 : x <= 0 ? 0 : 0.5 - 0.5 * Math.cos((Math.PI * x) / FADE_S));
    return Math.min(rc(sinceStart), rc(untilEnd));
  }

  /* Plays one signal at a time. Each pass through the loop region is a "segment": a buffer source
     with a fade-in at its start and a fade-out at its end. The next pass starts exactly when the
     previous one has faded out, and a switch fades the old signal out completely before the new
     one fades in at the position the old one reached: never a cross-fade. */
  class Player {
    constructor(ctx, buffers, gainDb) {
      this.ctx = ctx;
      this.buffers = buffers; // [reference, sound 0, sound 1, ...]
      this.duration = Math.min(...buffers.map((b) => b.duration));
      this.loopStart = 0;
      this.loopEnd = this.duration;
      this.current = null;
      this.playing = false;
      this.pausedAt = 0;
      this.segments = [];
      this.master = ctx.createGain();
      this.master.gain.value = Math.pow(10, (gainDb || 0) / 20);
      this.master.connect(ctx.destination);
      this.onstart = () => {};
      this.onstop = () => {};
    }

    _segmentAt(now) {
      let found = null;
      for (const s of this.segments) if (s.startCtx <= now + 1e-9) found = s;
      return found || this.segments[0] || null;
    }

    position() {
      if (!this.playing) return this.pausedAt;
      const now = this.ctx.currentTime;
      const s = this._segmentAt(now);
      if (!s) return this.pausedAt;
      if (now < s.startCtx) return s.startPos;
      return Math.min(s.startPos + (now - s.startCtx), s.startPos + (s.endCtx - s.startCtx));
    }

    _positionAt(when) {
      const s = this._segmentAt(when);
      if (!s) return this.pausedAt;
      return Math.min(s.startPos + Math.max(0, when - s.startCtx), this.loopEnd);
    }

    _startSegment(slot, pos, when) {
      if (this.loopEnd - pos < 4 * FADE_S) pos = this.loopStart;
      const duration = this.loopEnd - pos;
      const src = this.ctx.createBufferSource();
      src.buffer = this.buffers[slot + 1];
      const gain = this.ctx.createGain();
      gain.gain.value = 0;
      src.connect(gain).connect(this.master);
      gain.gain.setValueCurveAtTime(FADE_IN, when, FADE_S);
      gain.gain.setValueCurveAtTime(FADE_OUT, when + duration - FADE_S, FADE_S);
      src.start(when, pos, duration);
      const seg = { slot, src, gain, startCtx: when, startPos: pos, endCtx: when + duration, cancelled: false };
      const now = this.ctx.currentTime;
      this.segments = this.segments.filter((s) => s.endCtx > now && !s.cancelled);
      this.segments.push(seg);
      seg.timer = setTimeout(() => this._continue(seg), Math.max(0, (seg.endCtx - now - 0.25) * 1000));
      return seg;
    }

    _continue(seg) {
      if (seg.cancelled || !this.playing) return;
      this._startSegment(seg.slot, this.loopStart, seg.endCtx);
    }

    _cut(when) {
      for (const s of this.segments) {
        s.cancelled = true;
        clearTimeout(s.timer);
        if (s.startCtx >= when) {
          s.src.stop();
          continue;
        }
        if (s.endCtx <= when) continue;
        const level = envelope(when - s.startCtx, s.endCtx - when);
        const g = s.gain.gain;
        if (g.cancelAndHoldAtTime) g.cancelAndHoldAtTime(when);
        else g.cancelScheduledValues(when);
        g.setValueCurveAtTime(FADE_OUT.map((v) => v * level), when, FADE_S);
        s.src.stop(when + FADE_S);
      }
      this.segments = [];
    }

    play(slot) {
      if (slot !== undefined && slot !== null) this.current = slot;
      if (this.current === null) this.current = REFERENCE;
      if (this.playing) return;
      const when = this.ctx.currentTime + LEAD_S;
      this.playing = true;
      this._startSegment(this.current, this.pausedAt, when);
      this.onstart(this.current);
    }

    switchTo(slot) {
      if (!this.playing) { this.play(slot); return; }
      if (slot === this.current) return;
      const when = this.ctx.currentTime + LEAD_S;
      const pos = this._positionAt(when + FADE_S);
      this.onstop(this.current);
      this._cut(when);
      this.current = slot;
      this._startSegment(slot, pos, when + FADE_S);
      this.onstart(slot);
    }

    pause() {
      if (!this.playing) return;
      const when = this.ctx.currentTime + LEAD_S;
      this.pausedAt = this._positionAt(when);
      this._cut(when);
      this.playing = false;
      this.onstop(this.current);
    }

    stop() {
      this.pause();
      this.pausedAt = this.loopStart;
    }

    seek(pos) {
      pos = Math.max(this.loopStart, Math.min(pos, this.loopEnd - MIN_LOOP_S / 10));
      if (!this.playing) { this.pausedAt = pos; return; }
      const when = this.ctx.currentTime + LEAD_S;
      this._cut(when);
      this._startSegment(this.current, pos, when + FADE_S);
    }

    setLoop(start, end) {
      start = Math.max(0, start);
      end = Math.min(this.duration, end);
      if (end - start < MIN_LOOP_S) {
        end = Math.min(this.duration, start + MIN_LOOP_S);
        start = Math.max(0, end - MIN_LOOP_S);
      }
      const pos = this.position();
      this.loopStart = start;
      this.loopEnd = end;
      const inside = pos >= start && pos < end - 4 * FADE_S;
      if (this.playing) this.seek(inside ? pos : start);
      else if (!inside) this.pausedAt = start;
    }
  }

  // The player class itself, so the browser tests can render a switch offline and check its fades.
  window.EarshotPlayer = Player;

  /* ---- page state ---- */
  const state = {
    scores: new Array(n).fill(null),
    plays: new Array(n).fill(0),
    listeningMs: new Array(n).fill(0),
    since: null,
    loopUsed: false,
    pageStart: performance.now(),
  };
  let player = null;

  /* Unsaved answers survive a reload, a phone discarding the tab and the participant closing the
     tab and opening the link again: they are kept in localStorage until the server has the page.
     The key names the test (its submit URL), the page's position and its audio tokens. Those tokens
     are random per participant and page, so two tests or two participants sharing a browser never
     see each other's draft, and the key says nothing about who the participant is. */
  const DRAFT_PREFIX = "earshot-draft:";
  const DRAFT_TTL_MS = 7 * 24 * 3600 * 1000;
  const draftKey = DRAFT_PREFIX + data.submit_url + ":" + data.position + ":" +
    [data.reference, ...data.sounds.map((s) => s.stimulus)].join(",");

  function storeDraft() {
    // After the save, the page's own pagehide must not write back what was just cleared.
    if (E.guard.saved) return;
    try {
      const listening = state.listeningMs.slice();
      if (state.since !== null && player && player.current >= 0) listening[player.current] += performance.now() - state.since;
      localStorage.setItem(draftKey, JSON.stringify({
        scores: state.scores, plays: state.plays, listeningMs: listening,
        loopUsed: state.loopUsed, loop: player ? [player.loopStart, player.loopEnd] : null,
        elapsedMs: performance.now() - state.pageStart, savedAt: Date.now(),
      }));
    } catch (err) { /* storage full or disabled: the page still works, only without a draft */ }
  }

  function clearDraft() {
    try { localStorage.removeItem(draftKey); } catch (err) { /* nothing to remove */ }
  }

  // A page saved from another tab, or a test abandoned, would leave its draft in the participant's
  // browser for good; drafts are only worth keeping for as long as a participant may come back.
  function dropOldDrafts() {
    try {
      const keys = [];
      for (let i = 0; i < localStorage.length; i++) keys.push(localStorage.key(i));
      for (const key of keys) {
        if (!key || !key.startsWith(DRAFT_PREFIX)) continue;
        let savedAt = 0;
        try { savedAt = JSON.parse(localStorage.getItem(key)).savedAt || 0; } catch (err) { /* broken: dropped */ }
        if (Date.now() - savedAt > DRAFT_TTL_MS) localStorage.removeItem(key);
      }
    } catch (err) { /* storage disabled */ }
  }

  const isCount = (v) => Number.isInteger(v) && v >= 0;
  const isScore = (v) => v === null || (Number.isInteger(v) && v >= 0 && v <= 100);
  const isDuration = (v) => Number.isFinite(v) && v >= 0;
  const listOf = (a, ok) => Array.isArray(a) && a.length === n && a.every(ok);

  /* Played-state is restored with the scores, so "every sound played" still holds for a restored
     page without making the participant listen again: the plays were counted by this script, on
     this page's own signals, and written in the same record as the scores they led to. A score
     can only be entered while its sound plays, so a draft's score without a play is not one this
     page wrote; it is dropped and that sound must be played and rated again. */
  function loadDraft() {
    let draft = null;
    try { draft = JSON.parse(localStorage.getItem(draftKey) || "null"); } catch (err) { return; }
    if (!draft || !listOf(draft.scores, isScore) || !listOf(draft.plays, isCount) || !listOf(draft.listeningMs, isDuration)) return;
    state.plays = draft.plays;
    state.listeningMs = draft.listeningMs;
    state.loopUsed = draft.loopUsed === true;
    if (isDuration(draft.elapsedMs)) state.pageStart = performance.now() - draft.elapsedMs;
    if (Array.isArray(draft.loop) && draft.loop.every(Number.isFinite) && draft.loop[0] < draft.loop[1]) {
      player.setLoop(draft.loop[0], draft.loop[1]);
    }
    draft.scores.forEach((value, slot) => {
      if (value === null || state.plays[slot] < 1) return;
      sliders[slot].value = String(value);
      setScore(slot, value);
    });
    E.guard.dirty = true;
  }
  setInterval(() => { if (state.since !== null) storeDraft(); }, 2000);
  // Closing the tab ends the listening under way; its time belongs in the draft.
  window.addEventListener("pagehide", () => { if (E.guard.dirty) storeDraft(); });

  const el = (id) => document.getElementById(id);
  const playToggle = el("play-toggle");
  const stopButton = el("stop");
  const nextButton = el("next");
  const nowPlaying = el("now-playing");
  const sliders = Array.from(document.querySelectorAll("input.slider"));
  const outputs = sliders.map((_, i) => el("score-" + i));
  const buttons = Array.from(document.querySelectorAll(".sound-btn"));
  const buttonFor = (slot) => buttons.find((b) => Number(b.dataset.slot) === slot);
  const canvas = el("waveform");

  function labelOf(slot) {
    return slot === REFERENCE ? t("reference") : t("sound", { label: labels[slot] });
  }

  function refreshControls() {
    const current = player ? player.current : null;
    for (const b of buttons) {
      const slot = Number(b.dataset.slot);
      const isCurrent = slot === current;
      b.classList.toggle("current", isCurrent);
      b.classList.toggle("paused", isCurrent && !player.playing);
      b.setAttribute("aria-pressed", isCurrent ? "true" : "false");
      if (slot >= 0) {
        b.classList.toggle("played", state.plays[slot] > 0);
        b.closest(".column").classList.toggle("current", isCurrent);
      }
    }
    sliders.forEach((s, i) => { s.disabled = i !== current; });
    playToggle.textContent = player && player.playing ? t("pause") : t("play");
    playToggle.setAttribute("aria-pressed", player && player.playing ? "true" : "false");
    nowPlaying.textContent = current === null ? "" : t("now_playing", { label: labelOf(current) });
  }

  function startListening(slot) {
    if (slot >= 0) state.plays[slot] += 1;
    state.since = performance.now();
    E.guard.dirty = true;
    refreshControls();
    storeDraft();
  }

  function stopListening(slot) {
    if (state.since !== null && slot >= 0) state.listeningMs[slot] += performance.now() - state.since;
    state.since = null;
    refreshControls();
    storeDraft();
  }

  async function ensureRunning() {
    // Browsers start an AudioContext suspended until a user gesture; every control is one.
    // Not awaited: sources scheduled meanwhile start as soon as the context runs.
    if (player.ctx.state !== "running") player.ctx.resume();
  }

  async function select(slot) {
    if (!player) return;
    await ensureRunning();
    player.switchTo(slot);
    refreshControls();
    if (slot >= 0) sliders[slot].focus({ preventScroll: true });
  }

  async function togglePlay() {
    if (!player) return;
    await ensureRunning();
    if (player.playing) player.pause();
    else player.play(player.current === null ? REFERENCE : player.current);
    refreshControls();
  }

  function setScore(slot, value) {
    state.scores[slot] = value;
    sliders[slot].classList.remove("unset");
    sliders[slot].setAttribute("aria-valuetext", t("score_value", { value }));
    outputs[slot].textContent = String(value);
    E.guard.dirty = true;
    storeDraft();
  }

  /* The value under the pointer, by the browser's own geometry: the thumb's centre travels from half
     a thumb above the bottom (min) to half a thumb below the top (max). The thumb's length is the
     stylesheet's --thumb-h. */
  function valueAt(slider, clientY) {
    const rect = slider.getBoundingClientRect();
    const thumb = parseFloat(getComputedStyle(slider).getPropertyValue("--thumb-h")) || 0;
    const fraction = Math.max(0, Math.min(1, (rect.bottom - thumb / 2 - clientY) / (rect.height - thumb)));
    const min = Number(slider.min), max = Number(slider.max), step = Number(slider.step) || 1;
    return min + Math.round((fraction * (max - min)) / step) * step;
  }

  sliders.forEach((slider, slot) => {
    const movable = () => player && player.current === slot && !slider.disabled;
    const take = () => {
      if (!movable()) return;
      setScore(slot, Number(slider.value));
    };
    slider.addEventListener("input", take);
    /* An unset slider still holds the DOM value 50 under its invisible thumb. A first press within
       a few points of 50 lands on that thumb, which the browser grabs instead of moving, so every
       such rating would be stored as exactly 50, and a press that moves nothing fires no "input".
       The value under the pointer is set and taken here; the browser's own drag carries on from
       there. */
    slider.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || state.scores[slot] !== null || !movable()) return;
      slider.value = String(valueAt(slider, event.clientY));
      take();
    });
  });

  buttons.forEach((b) => b.addEventListener("click", () => select(Number(b.dataset.slot))));
  playToggle.addEventListener("click", togglePlay);
  stopButton.addEventListener("click", () => { if (player) { player.stop(); refreshControls(); } });

  /* Keyboard: 1–9 and 0 choose sounds 1–10, R the reference, space plays/pauses. Arrow keys,
     Page Up/Down and Home/End move the focused slider natively. */
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = event.target && event.target.tagName;
    if (tag === "TEXTAREA" || (tag === "INPUT" && event.target.type === "text")) return;
    if (event.key === " ") {
      event.preventDefault();
      if (!event.repeat) togglePlay();
      return;
    }
    if (event.key === "r" || event.key === "R") { event.preventDefault(); select(REFERENCE); return; }
    if (/^[0-9]$/.test(event.key)) {
      const slot = event.key === "0" ? 9 : Number(event.key) - 1;
      if (slot < n) { event.preventDefault(); select(slot); }
    }
  });
  // A focused button would otherwise also "click" on the space key's release.
  document.addEventListener("keyup", (event) => { if (event.key === " ") event.preventDefault(); });

  /* ---- waveform, loop region, position indicator ---- */
  let peaks = null;
  function computePeaks() {
    const width = Math.max(1, Math.floor(canvas.clientWidth * (window.devicePixelRatio || 1)));
    canvas.width = width;
    canvas.height = Math.floor(canvas.clientHeight * (window.devicePixelRatio || 1));
    const buf = player.buffers[0];
    const ch = buf.getChannelData(0);
    const usable = Math.floor(player.duration * buf.sampleRate);
    const per = Math.max(1, Math.floor(usable / width));
    peaks = new Float32Array(width * 2);
    for (let x = 0; x < width; x++) {
      let lo = 0, hi = 0;
      for (let i = x * per; i < Math.min(usable, (x + 1) * per); i++) {
        const v = ch[i];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      peaks[2 * x] = lo;
      peaks[2 * x + 1] = hi;
    }
  }

  let drag = null;
  function draw() {
    if (!player) return;
    if (!peaks || canvas.width !== Math.floor(canvas.clientWidth * (window.devicePixelRatio || 1))) computePeaks();
    const g = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, d = player.duration;
    const xOf = (s) => (s / d) * w;
    g.clearRect(0, 0, w, h);
    g.fillStyle = "rgba(0, 114, 178, 0.12)";
    const a = drag ? Math.min(drag.start, drag.end) : player.loopStart;
    const b = drag ? Math.max(drag.start, drag.end) : player.loopEnd;
    g.fillRect(xOf(a), 0, xOf(b) - xOf(a), h);
    g.fillStyle = "#4a5d73";
    const mid = h / 2, amp = h / 2 - 2;
    let peak = 1e-9;
    for (let i = 0; i < peaks.length; i++) peak = Math.max(peak, Math.abs(peaks[i]));
    for (let x = 0; x < w; x++) {
      const lo = peaks[2 * x] / peak, hi = peaks[2 * x + 1] / peak;
      g.fillRect(x, mid - hi * amp, 1, Math.max(1, (hi - lo) * amp));
    }
    g.fillStyle = "#0072b2";
    g.fillRect(xOf(player.loopStart), 0, 2, h);
    g.fillRect(xOf(player.loopEnd) - 2, 0, 2, h);
    g.fillStyle = "#d55e00";
    g.fillRect(Math.round(xOf(player.position())) - 1, 0, 3, h);
    requestAnimationFrame(draw);
  }

  function timeAt(event) {
    const rect = canvas.getBoundingClientRect();
    return Math.max(0, Math.min(1, (event.clientX - rect.left) / rect.width)) * player.duration;
  }

  function updateLoopLabel() {
    el("loop-label").textContent = t("loop_label", { start: player.loopStart.toFixed(2), end: player.loopEnd.toFixed(2) });
    el("loop-reset").disabled = player.loopStart === 0 && player.loopEnd === player.duration;
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (!player) return;
    canvas.setPointerCapture(event.pointerId);
    drag = { start: timeAt(event), end: timeAt(event) };
  });
  canvas.addEventListener("pointermove", (event) => { if (drag) drag.end = timeAt(event); });
  canvas.addEventListener("pointerup", async (event) => {
    if (!drag) return;
    drag.end = timeAt(event);
    const a = Math.min(drag.start, drag.end), b = Math.max(drag.start, drag.end);
    drag = null;
    // A click (tiny drag) moves the playback position; a drag selects a loop region.
    if (b - a < 0.05 * player.duration) {
      player.seek(a);
    } else {
      player.setLoop(a, b);
      state.loopUsed = true;
      storeDraft();
      updateLoopLabel();
    }
  });
  el("loop-reset").addEventListener("click", () => { player.setLoop(0, player.duration); storeDraft(); updateLoopLabel(); });

  /* ---- enforcement and saving ---- */
  function missing() {
    const problems = [];
    const list = (slots) => slots.map((s) => labels[s]).join(", ");
    const unplayed = [...Array(n).keys()].filter((s) => state.plays[s] < 1);
    const unrated = [...Array(n).keys()].filter((s) => state.scores[s] === null);
    if (data.enforce.all_played && unplayed.length) problems.push(t("missing_played", { list: list(unplayed) }));
    if (data.enforce.all_rated && unrated.length) problems.push(t("missing_rated", { list: list(unrated) }));
    if (data.enforce.one_at_100 && !state.scores.some((v) => v === 100)) problems.push(t("missing_100"));
    return problems;
  }

  nextButton.addEventListener("click", async () => {
    const problems = missing();
    if (problems.length) { E.showMessage(problems.join(" "), "error"); return; }
    if (player) { player.pause(); refreshControls(); }
    nextButton.disabled = true;
    const result = await E.save({
      ratings: data.sounds.map((s, slot) => ({
        stimulus: s.stimulus,
        score: state.scores[slot],
        plays: state.plays[slot],
        listening_ms: Math.round(state.listeningMs[slot]),
      })),
      duration_ms: Math.round(performance.now() - state.pageStart),
      loop_used: state.loopUsed,
    });
    if (result) {
      clearDraft();
      E.go(result);
    } else nextButton.disabled = false;
  });

  /* ---- load: every signal of the trial fetched and decoded once ---- */
  async function load() {
    const ctx = new AudioContext();
    const urls = [data.reference, ...data.sounds.map((s) => s.url)];
    const buffers = await Promise.all(
      urls.map(async (url) => {
        const response = await fetch(url, { credentials: "same-origin" });
        if (!response.ok) throw new Error("HTTP " + response.status);
        return ctx.decodeAudioData(await response.arrayBuffer());
      })
    );
    player = new Player(ctx, buffers, data.gain_db);
    player.onstart = startListening;
    player.onstop = stopListening;
    el("loading").textContent = "";
    el("loading").hidden = true;
    for (const c of [playToggle, stopButton, nextButton, ...buttons]) c.disabled = false;
    dropOldDrafts();
    loadDraft();
    updateLoopLabel();
    refreshControls();
    requestAnimationFrame(draw);
    window.earshotPlayer = player; // for the browser tests: position(), current, playing
    document.body.dataset.ready = "true";
  }
  load().catch((err) => {
    el("loading").textContent = t("load_failed");
    el("loading").className = "message error";
    console.error(err);
  });
  // Whole-page (not only slider) state for the browser tests.
  window.earshotState = state;
})();
