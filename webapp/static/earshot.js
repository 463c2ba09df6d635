/* Earshot participant pages: saving with retry, the unsaved-answers guard, and the simple pages
   (headphone check, volume, questionnaire). The MUSHRA page lives in mushra.js. */
(function () {
  "use strict";

  const data = JSON.parse(document.getElementById("page-data").textContent);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function t(key, values) {
    let text = data.messages[key] || key;
    for (const [k, v] of Object.entries(values || {})) text = text.split("{" + k + "}").join(String(v));
    return text;
  }

  function newKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  const guard = { dirty: false, saved: false };
  window.addEventListener("beforeunload", (event) => {
    if (guard.dirty && !guard.saved) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  function showMessage(text, kind) {
    const el = document.getElementById("message");
    if (!el) return;
    el.textContent = text;
    el.className = "message" + (kind ? " " + kind : "");
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  /* POST the page's answers. One idempotency key per page load: every retry carries it, so the
     server stores the page once however many times the request is repeated. Network failures and
     5xx answers are retried for ever with back-off (the answers stay on the page); a 4xx answer is
     final and shown. */
  const idempotencyKey = newKey();
  let saving = false;
  async function save(body) {
    if (saving) return null;
    saving = true;
    const payload = Object.assign({ position: data.position, idempotency_key: idempotencyKey }, body);
    let delayMs = 1000;
    showMessage(t("saving"), "info");
    try {
      for (;;) {
        let response = null;
        try {
          response = await fetch(data.submit_url, {
            method: "POST",
            credentials: "same-origin",
            headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
            body: JSON.stringify(payload),
          });
        } catch (err) {
          response = null;
        }
        if (response && response.ok) {
          const result = await response.json();
          guard.saved = true;
          return result;
        }
        if (response && response.status === 409) {
          // This page was already saved (another tab, or an answer lost on the way back):
          // go to the page the server expects next.
          guard.saved = true;
          return { next_url: data.next_url };
        }
        if (response && response.status >= 400 && response.status < 500 && ![408, 425, 429].includes(response.status)) {
          let message = response.statusText;
          try { message = (await response.json()).message || message; } catch (err) { /* not JSON */ }
          showMessage(t("save_error", { message: message }), "error");
          return null;
        }
        showMessage(t("save_retry", { s: Math.round(delayMs / 1000) }), "warn");
        await sleep(delayMs);
        delayMs = Math.min(delayMs * 2, 16000);
      }
    } finally {
      saving = false;
    }
  }

  function go(result) {
    if (result) window.location.assign(result.next_url || data.next_url);
  }

  window.Earshot = { data, t, save, go, guard, showMessage };

  /* ---- headphone check ---- */
  function headphonesPage() {
    const played = new Set();
    let audio = null;
    document.querySelectorAll(".play-round").forEach((button) => {
      button.addEventListener("click", () => {
        const round = Number(button.dataset.round);
        if (audio) audio.pause();
        audio = new Audio(data.rounds[round]);
        // play() rejects when a newer round interrupts this one; that is expected.
        audio.play().catch(() => {});
        played.add(round);
        guard.dirty = true;
        document.querySelectorAll(`input[name="round-${round}"]`).forEach((r) => { r.disabled = false; });
      });
    });
    let warned = false;
    document.getElementById("next").addEventListener("click", async () => {
      if (warned) { go({ next_url: data.next_url }); return; }
      const answers = [];
      for (let r = 0; r < data.rounds.length; r++) {
        const checked = document.querySelector(`input[name="round-${r}"]:checked`);
        if (!checked || !played.has(r)) { showMessage(t("headphones_answer_all"), "error"); return; }
        answers.push(Number(checked.value));
      }
      const result = await save({ answers });
      if (!result) return;
      if (!result.headphones_passed && !result.stopped) {
        warned = true;
        showMessage(t("headphones_failed_warn"), "warn");
        return;
      }
      go(result);
    });
  }

  /* ---- volume ---- */
  function volumePage() {
    let ctx = null, buffer = null, source = null, gainNode = null, plays = 0;
    const slider = document.getElementById("gain");
    const label = document.getElementById("gain-label");
    const play = document.getElementById("volume-play");
    const update = () => {
      label.textContent = t("volume_gain", { value: Number(slider.value).toFixed(1) });
      if (gainNode) gainNode.gain.value = Math.pow(10, Number(slider.value) / 20);
    };
    slider.addEventListener("input", () => { guard.dirty = true; update(); });
    let loading = null;
    play.addEventListener("click", async () => {
      if (!ctx) {
        ctx = new AudioContext();
        gainNode = ctx.createGain();
        gainNode.connect(ctx.destination);
        loading = fetch(data.sound, { credentials: "same-origin" })
          .then((r) => r.arrayBuffer())
          .then((bytes) => ctx.decodeAudioData(bytes))
          .then((decoded) => { buffer = decoded; });
      }
      // resume() is not awaited: a source started on a context that is still resuming simply
      // begins once it runs.
      ctx.resume();
      await loading;
      if (source) { source.stop(); source = null; play.textContent = t("play"); return; }
      source = ctx.createBufferSource();
      source.buffer = buffer;
      source.loop = true;
      source.connect(gainNode);
      update();
      source.start();
      plays += 1;
      guard.dirty = true;
      play.textContent = t("stop");
    });
    update();
    document.getElementById("next").addEventListener("click", async () => {
      if (plays < 1) { showMessage(t("volume_play_first"), "error"); return; }
      if (source) { source.stop(); source = null; }
      go(await save({ gain_db: Number(slider.value), plays }));
    });
  }

  /* ---- questionnaire ---- */
  function questionnairePage() {
    document.getElementById("questionnaire").addEventListener("input", () => { guard.dirty = true; });
    document.getElementById("next").addEventListener("click", async () => {
      const answers = {};
      for (const field of document.querySelectorAll(".field")) {
        const input = field.querySelector("input, select, textarea");
        const raw = input.value.trim();
        if (!raw) {
          if (field.dataset.required === "true") {
            showMessage(t("field_required", { label: field.dataset.label }), "error");
            input.focus();
            return;
          }
          continue;
        }
        answers[field.dataset.name] = field.dataset.kind === "number" ? Number(raw) : raw;
      }
      go(await save({ answers }));
    });
  }

  if (data.kind === "headphones") headphonesPage();
  else if (data.kind === "volume") volumePage();
  else if (data.kind === "questionnaire") questionnairePage();
})();
