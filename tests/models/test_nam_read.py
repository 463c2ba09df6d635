"""Reading .nam files: every reference file renders as NAM's C++ engine renders it (tests/data/nam-reference,
renders made by the engine itself), slim values pick what the engine picks, and what cannot be read
is refused naming the key, the value and the format version."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from models.errors import CheckpointError
from models.export.nam_read import load_nam
from models.inference.rendering import render, render_whole
from models.nets.nam_lstm import NamLSTM
from models.nets.nam_wavenet import NamWaveNet
from models.nets.wavenet import WaveNet

DATA = Path(__file__).resolve().parents[1] / "data" / "nam-reference"
FIRST_SECOND = 48000
EXTRA_SAMPLES = 24000  # the extra renders hold the first half second


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    x, rate = sf.read(DATA / "input.wav", dtype="float32")
    assert rate == 48000 and x.shape == (144000,)
    return x


def _reference(name: str) -> np.ndarray:
    y, rate = sf.read(DATA / name, dtype="float32")
    assert rate == 48000
    return y


def _tolerance(reference: np.ndarray) -> float:
    # 1e-5 absolute; two of the random test networks peak above 10, where float32 itself spaces values
    # 1e-6 apart: NAM's own float32 render of wavenet_a2_max is 8e-6 off a float64 computation of it
    # (slimmable_wavenet: 1.7e-5), so there the bound is 1e-5 relative to the peak.
    return 1e-5 * max(1.0, float(np.abs(reference).max()))


REFERENCE_CASES = [
    ("wavenet.nam", None, "wavenet.wav", WaveNet),
    ("lstm.nam", None, "lstm.wav", NamLSTM),
    ("wavenet_a1_standard.nam", None, "wavenet_a1_standard.wav", WaveNet),
    ("wavenet_a2_max.nam", None, "wavenet_a2_max.wav", NamWaveNet),
    ("A2.nam", None, "A2.wav", NamWaveNet),
    ("A2.nam", 0.0, "A2_slim0.0.wav", NamWaveNet),
    ("A2.nam", 1.0, "A2_slim1.0.wav", NamWaveNet),
]


@pytest.mark.parametrize("model_file, slim, render_file, kind", REFERENCE_CASES,
                         ids=[c[2][:-4] for c in REFERENCE_CASES])
def test_renders_equal_nams_engine(audio, model_file, slim, render_file, kind):
    model, info = load_nam(DATA / "models" / model_file, slim=slim)
    assert isinstance(model, kind) and info["slim"] == slim
    reference = _reference(f"renders/{render_file}")
    tolerance = _tolerance(reference)
    whole = render_whole(model, audio)
    assert np.abs(whole - reference).max() <= tolerance
    # Chunked over the first second: several chunks, each from the silent state, each warmed up.
    chunked = render(model, audio[:FIRST_SECOND], chunk_samples=4096, threads=1)
    assert np.abs(chunked - reference[:FIRST_SECOND]).max() <= tolerance


def test_float64_network_meets_1e5_on_the_loudest_reference(audio):
    model, _ = load_nam(DATA / "models" / "wavenet_a2_max.nam")
    reference = _reference("renders/wavenet_a2_max.wav")
    assert np.abs(render_whole(model.double(), audio) - reference).max() <= 1e-5


EXTRA_CASES = [
    ("models/slimmable_wavenet.nam", None), ("models/slimmable_wavenet.nam", 0.0),
    ("models/slimmable_wavenet.nam", 0.5), ("models/slimmable_container.nam", None),
    ("models/slimmable_container.nam", 0.0), ("models/slimmable_container.nam", 0.5),
    ("models/wavenet_condition_dsp.nam", None), ("models/my_model.nam", None), ("crafted/features.nam", None),
    ("crafted/slimmable_gated.nam", None), ("crafted/slimmable_gated.nam", 0.0),
    ("crafted/slimmable_gated.nam", 0.5),
]


def _extra_name(model_file: str, slim: float | None) -> str:
    return Path(model_file).stem + ("" if slim is None else f"_slim{slim}")


@pytest.mark.parametrize("model_file, slim", EXTRA_CASES, ids=[_extra_name(*c) for c in EXTRA_CASES])
def test_more_files_render_equal_nams_engine(audio, model_file, slim):
    model, _ = load_nam(DATA / model_file, slim=slim)
    reference = _reference(f"renders-extra/{_extra_name(model_file, slim)}.wav")
    x = audio[:EXTRA_SAMPLES]
    tolerance = _tolerance(reference)
    assert np.abs(render_whole(model, x) - reference).max() <= tolerance
    assert np.abs(render(model, x, chunk_samples=3000, threads=1) - reference).max() <= tolerance


def _document(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def test_container_info_and_slim_values():
    document = _document("models/A2.nam")
    submodels = document["config"]["submodels"]
    model, info = load_nam(DATA / "models" / "A2.nam")
    assert info["version"] == "0.7.0" and info["architecture"] == "SlimmableContainer"
    assert info["sample_rate"] == 48000.0 and info["slim"] is None and info["submodel"] == 1
    # Per level the file's max_value, and its weights less the head scale.
    assert info["levels"] == [{"max_value": s["max_value"], "architecture": "WaveNet",
                               "parameters": len(s["model"]["weights"]) - 1} for s in submodels]
    assert info["metadata"]["loudness"] == submodels[1]["model"]["metadata"]["loudness"]
    assert sum(p.numel() for p in model.parameters()) == len(submodels[1]["model"]["weights"]) - 1
    # NAM plays the first submodel whose max_value exceeds the slim value (0.5 belongs to the second).
    for slim, index in ((0.0, 0), (0.4999, 0), (0.5, 1), (1.0, 1)):
        small, small_info = load_nam(DATA / "models" / "A2.nam", slim=slim)
        assert small_info["submodel"] == index and small_info["slim"] == slim
        assert small_info["metadata"]["gain"] == submodels[index]["model"]["metadata"]["gain"]
        assert sum(p.numel() for p in small.parameters()) == len(submodels[index]["model"]["weights"]) - 1


def test_slimmable_wavenet_levels():
    # allowed_channels [1, 2, 3]: NAM picks allowed[min(floor(3·slim), 2)].
    model, info = load_nam(DATA / "models" / "slimmable_wavenet.nam")
    assert [level["channels"] for level in info["levels"]] == [[1], [2], [3]]
    assert [level["max_value"] for level in info["levels"]] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert info["levels"][-1]["parameters"] == len(_document("models/slimmable_wavenet.nam")["weights"]) - 1
    for slim, channels in ((0.0, 1), (0.33, 1), (1 / 3, 2), (0.99, 3), (1.0, 3)):
        slimmed, _ = load_nam(DATA / "models" / "slimmable_wavenet.nam", slim=slim)
        assert slimmed.config.arrays[0].channels == channels
    assert model.config.arrays[0].channels == 3


def test_receptive_fields_match_the_layouts():
    # A2: three runs of kernel 6 over dilations 1, 3, 7, 17, 41, 101, 239 (5 · 409 each), kernel 15 at
    # dilations 1 and 13 (14 · 14), the head's kernel 16: 1 + 3·2045 + 196 + 15.
    assert load_nam(DATA / "models" / "A2.nam")[0].receptive_field == 6347
    # wavenet_a2_max: its own array (kernel 4, dilations 1, 2: 9) plus the condition network's
    # (kernel 2 at 1, 2: 3; kernel 3 at 1, 3, 5: 18), 1 + 9 + 3 + 18.
    assert load_nam(DATA / "models" / "wavenet_a2_max.nam")[0].receptive_field == 31


def test_streaming_blocks_equal_the_whole_file(audio):
    model, _ = load_nam(DATA / "models" / "wavenet_a2_max.nam")
    x = torch.from_numpy(audio[:5000])[None, :, None]
    with torch.no_grad():
        whole, _ = model(x)
        state, blocks = None, []
        for start in range(0, 5000, 257):
            y, state = model(x[:, start:start + 257], state=state)
            blocks.append(y)
    np.testing.assert_allclose(torch.cat(blocks, dim=1).numpy(), whole.numpy(), atol=1e-6, rtol=0)


def test_07_file_in_the_older_layout_renders_like_the_zoo_wavenet(tmp_path, audio):
    document = _document("models/wavenet.nam")
    zoo, _ = load_nam(DATA / "models" / "wavenet.nam")
    (tmp_path / "w.nam").write_text(json.dumps({**document, "version": "0.7.0"}))
    general, info = load_nam(tmp_path / "w.nam")
    assert isinstance(general, NamWaveNet) and info["version"] == "0.7.0"
    x = audio[:8000]
    np.testing.assert_allclose(render_whole(general, x), render_whole(zoo, x), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------
# Refusals


def _write(path: Path, document: dict) -> Path:
    path.write_text(json.dumps(document))
    return path


@pytest.fixture(scope="module")
def small_07() -> dict:
    """The small WaveNet of A2.nam (format 0.7.0, 1871 weights)."""
    return _document("models/A2.nam")["config"]["submodels"][0]["model"]


def _with_layer(document: dict, **changes) -> dict:
    document = copy.deepcopy(document)
    document["config"]["layers"][0].update(changes)
    return document


def test_unsupported_values_name_key_value_and_version(tmp_path, small_07):
    path = _write(tmp_path / "x.nam", _with_layer(small_07, gating_mode="foo"))
    with pytest.raises(CheckpointError) as caught:
        load_nam(path)
    assert str(caught.value) == (f"{path}: config.layers[0].gating_mode: 'foo' is not supported (format 0.7.0): "
                                 "NAM's gating modes are ['none', 'gated', 'blended']")
    cases = [
        ({"activation": {"type": "Softsigmoid"}}, r"config\.layers\[0\]\.activation\.type: 'Softsigmoid' is not "
                                                  r"supported \(format 0\.7\.0\)"),
        ({"activation": [{"type": "LeakyReLU", "negative_slope": 0.01}] * 22 + ["Gelu"]},
         r"config\.layers\[0\]\.activation\[22\]: 'Gelu' is not supported"),
        ({"packing": {"groups": 2}}, r"config\.layers\[0\]\.packing: \{'groups': 2\} is not supported \(format "
                                     r"0\.7\.0\): not a key NAM's engine reads"),
        ({"slimmable": {"method": "prune"}}, r"config\.layers\[0\]\.slimmable\.method: 'prune' is not supported"),
        ({"conv_pre_film": {"active": True, "scale": 2}}, r"conv_pre_film\.scale: 2 is not supported"),
        ({"kernel_sizes": [6] * 22}, r"config\.layers\[0\]\.kernel_sizes: expected 23 entries"),
        ({"channels": 4}, r"expected \d+ weights for this WaveNet config, found 1871"),
    ]
    for i, (change, message) in enumerate(cases):
        with pytest.raises(CheckpointError, match=message):
            load_nam(_write(tmp_path / f"c{i}.nam", _with_layer(small_07, **change)))


def test_gated_prelu_needs_a_slope_per_channel(tmp_path, small_07):
    # NAM's engine indexes a gated layer's PReLU slopes per channel: one slope for three channels reads
    # past the list, so such a file is refused rather than guessed.
    document = _with_layer(small_07, gating_mode="gated", secondary_activation="Sigmoid",
                           activation={"type": "PReLU", "negative_slope": 0.1})
    with pytest.raises(CheckpointError, match=r"config\.layers\[0\]: .*gated layer's PReLU needs one slope per "
                                              r"bottleneck channel \(3\), found a single slope"):
        load_nam(_write(tmp_path / "p.nam", document))


def test_file_level_refusals(tmp_path, small_07):
    with pytest.raises(CheckpointError, match=r"version: '0\.8\.0' is not supported"):
        load_nam(_write(tmp_path / "v.nam", {**small_07, "version": "0.8.0"}))
    with pytest.raises(CheckpointError, match=r"architecture: 'ConvNet' is not supported \(format 0\.7\.0\)"):
        load_nam(_write(tmp_path / "a.nam", {**small_07, "architecture": "ConvNet"}))
    with pytest.raises(CheckpointError, match=r"c\.nam: slim 0\.5: this WaveNet has no slimmable layer arrays"):
        load_nam(_write(tmp_path / "c.nam", small_07), slim=0.5)
    with pytest.raises(CheckpointError, match=r"l\.nam: slim 0\.5: an LSTM has no slimmable levels"):
        load_nam(_write(tmp_path / "l.nam", _document("models/lstm.nam")), slim=0.5)
    with pytest.raises(CheckpointError, match=r"slim: expected a number from 0 to 1, found 1\.5"):
        load_nam(DATA / "models" / "A2.nam", slim=1.5)
    stereo = _with_layer(small_07, head={"out_channels": 2, "kernel_size": 16, "bias": True})
    with pytest.raises(CheckpointError, match=r"config: a WaveNet of 1 input and 2 output channels is not supported "
                                              r"\(format 0\.7\.0\)"):
        load_nam(_write(tmp_path / "s.nam", stereo))
    with pytest.raises(CheckpointError, match="missing key 'weights'"):
        load_nam(_write(tmp_path / "w.nam", {k: v for k, v in small_07.items() if k != "weights"}))


def test_broken_container_submodel_is_named(tmp_path, small_07):
    document = _document("models/A2.nam")
    document["config"]["submodels"][1]["model"]["weights"] = document["config"]["submodels"][1]["model"]["weights"][:-1]
    with pytest.raises(CheckpointError, match=r"config\.submodels\[1\]\.model\.weights: expected 12146 weights"):
        load_nam(_write(tmp_path / "broken.nam", document))
    document = _document("models/A2.nam")
    document["config"]["submodels"][0]["model"]["config"]["layers"][0]["gating_mode"] = "sometimes"
    with pytest.raises(CheckpointError, match=r"config\.submodels\[0\]\.model\.config\.layers\[0\]\.gating_mode: "
                                              r"'sometimes' is not supported \(format 0\.7\.0\)"):
        load_nam(_write(tmp_path / "broken2.nam", document))
    document = _document("models/A2.nam")
    document["config"]["submodels"].reverse()
    with pytest.raises(CheckpointError, match=r"submodels\[1\]\.max_value: expected max_values in ascending order"):
        load_nam(_write(tmp_path / "order.nam", document))


def test_condition_network_must_be_a_wavenet(tmp_path):
    document = _document("models/wavenet_condition_dsp.nam")
    document["config"]["condition_dsp"] = _document("models/lstm.nam")
    with pytest.raises(CheckpointError, match=r"config\.condition_dsp\.architecture: 'LSTM' is not supported "
                                              r"\(format 0\.5\.4\)"):
        load_nam(_write(tmp_path / "cond.nam", document))
