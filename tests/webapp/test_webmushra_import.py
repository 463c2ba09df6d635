"""Importing a webMUSHRA YAML config as a stimulus set."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from webapp.errors import ImportFormatError
from webapp.manifest import load_stimulus_set
from webapp.webmushra import import_webmushra

CONFIG = """\
testname: Amp test
testId: amp
bufferSize: 2048
pages:
  - type: generic
    id: intro
    content: hello
  - - type: mushra
      id: trial1
      name: Riff
      reference: configs/resources/audio/ref.wav
      createAnchor35: true
      createAnchor70: true
      stimuli:
        C1: configs/resources/audio/c1.wav
        C2: configs/resources/audio/c2.wav
    - type: mushra
      id: trial2
      reference: configs/resources/audio/ref.wav
      createAnchor35: false
      stimuli:
        C1: configs/resources/audio/c2.wav
  - type: finish
    name: Thanks
"""

RATE = 48000


@pytest.fixture
def webmushra_root(tmp_path):
    root = tmp_path / "webMUSHRA"
    audio = root / "configs" / "resources" / "audio"
    audio.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name in ("ref", "c1", "c2"):
        sf.write(audio / f"{name}.wav", 0.1 * rng.standard_normal(RATE * 2), RATE, subtype="FLOAT")
    (root / "configs" / "amp.yaml").write_text(CONFIG)
    return root


def test_import_builds_a_servable_set(webmushra_root, tmp_path):
    out = import_webmushra(webmushra_root / "configs" / "amp.yaml", tmp_path / "stimuli" / "amp")
    stim = load_stimulus_set(out)
    assert stim.settings.title == "Amp test"
    assert [t.id for t in stim.trials] == ["trial1", "trial2"]
    t1, t2 = stim.trials
    assert [(c.id, c.role) for c in t1.conditions] == [
        ("hidden_reference", "hidden_reference"), ("anchor_3k5", "anchor_low"), ("anchor_7k", "anchor_mid"),
        ("C1", "system"), ("C2", "system"),
    ]
    assert [c.id for c in t2.conditions] == ["hidden_reference", "C1"]
    ref = (webmushra_root / "configs/resources/audio/ref.wav").read_bytes()
    assert t1.condition("hidden_reference").path.read_bytes() == ref
    assert t2.condition("C1").path.read_bytes() == (webmushra_root / "configs/resources/audio/c2.wav").read_bytes()


@pytest.mark.parametrize(("anchor", "cutoff"), [("anchor_3k5", 3500.0), ("anchor_7k", 7000.0)])
def test_anchors_meet_the_bs1534_mask(webmushra_root, tmp_path, anchor, cutoff):
    out = import_webmushra(webmushra_root / "configs" / "amp.yaml", tmp_path / "amp")
    x, _ = sf.read(out / "audio" / "trial1" / "reference.wav")
    y, _ = sf.read(out / "audio" / "trial1" / f"{anchor}.wav")
    # transfer function estimated independently: cross-spectrum over input spectrum (Welch)
    f, pxy = signal.csd(x, y, fs=RATE, nperseg=8192)
    _, pxx = signal.welch(x, fs=RATE, nperseg=8192)
    gain_db = 20 * np.log10(np.abs(pxy / pxx))
    passband = (f > 100) & (f <= cutoff * 0.95)
    assert np.max(np.abs(gain_db[passband])) < 0.1
    assert np.max(gain_db[(f >= cutoff * 8 / 7)]) < -25
    assert np.max(gain_db[(f >= cutoff * 9 / 7)]) < -50


@pytest.mark.slow
def test_import_errors(webmushra_root, tmp_path):
    config = webmushra_root / "configs" / "amp.yaml"
    import_webmushra(config, tmp_path / "amp")
    with pytest.raises(ImportFormatError, match="already exists"):
        import_webmushra(config, tmp_path / "amp")
    broken = webmushra_root / "configs" / "broken.yaml"
    broken.write_text(CONFIG.replace("c1.wav", "missing.wav"))
    with pytest.raises(ImportFormatError, match=r"stimuli.C1: 'configs/resources/audio/missing.wav' not found"):
        import_webmushra(broken, tmp_path / "broken")
    assert not (tmp_path / "broken").exists() and not list(tmp_path.glob(".broken.*"))
    r = subprocess.run([sys.executable, "-m", "webapp", "import-webmushra", str(broken), "--out", str(tmp_path / "b2")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
