"""Against the original code's own outputs (../shared/golden/elmarc, see its SOURCE.md): every
CNN front-end with the original's weights, the preprocessing, and the ELM. Under the preset's
options they must agree; under the default options the tests pin down where and how much the
clean method differs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.frontends import GOLDEN, frontend
from helpers.tf1 import load_tf1_weights

from elm_audio.extraction.inputs import InputSettings, fit_decoded, network_inputs
from elm_audio.sound.decode import load

pytestmark = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden data not found at {GOLDEN}")

FRONTENDS = (
    "sample_level", "frame_level", "frame_level_many", "vgg", "cnn_7x96", "cnn_7x86",
    "timbral", "temporal", "timbral_temporal", "timbral_time",
)  # fmt: skip
PAPER = "experiment=paper"


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / name) as data:
        return {k: data[k] for k in data.files}


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """Largest difference, relative to the reference's largest magnitude."""
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def golden_frontend(name: str, *overrides: str):
    g = golden(f"frontend_{name}.npz")
    front = frontend(name, "small", 0, *overrides).eval()
    variables = {k[len("var/") :]: v for k, v in g.items() if k.startswith("var/")}
    load_tf1_weights(front, variables, [str(n) for n in g["var_names"]])
    x = torch.from_numpy(g["inputs"])
    with torch.inference_mode():
        ours = front.features(x[..., 0] if front.input_kind == "waveform" else x).double().numpy()
    return ours, g


@pytest.mark.parametrize("name", FRONTENDS)
def test_the_paper_preset_gives_the_originals_feature_vectors(name):
    ours, g = golden_frontend(name, PAPER)
    assert ours.shape == g["features"].shape
    assert relative_error(ours, g["features"]) < 1e-4


@pytest.mark.parametrize("name", ["frame_level", "frame_level_many"])
def test_by_default_the_back_end_keeps_a_mean_per_channel_where_the_original_kept_one_per_layer(name):
    ours, g = golden_frontend(name)
    n = int(g["num_filters"])
    front_width = g["features"].shape[1] - 3 * n
    # the front convolutions' channel means are the original's
    assert relative_error(ours[:, :front_width], g["features"][:, :front_width]) < 1e-4
    # the back-end: our per-channel means are the original's maps' channel means ...
    backend = ours[:, front_width:].reshape(2, 3, n)
    assert relative_error(backend, g["backend_channel_means"]) < 1e-4
    # ... whose mean is the one scalar the original kept per layer, the rest of its row zeros
    original = g["features"][:, front_width:].reshape(2, 3, n)
    np.testing.assert_allclose(original[:, :, 0], backend.mean(axis=2), rtol=1e-4)
    assert not original[:, :, 1:].any() and (backend[:, :, 1:] != 0).all()
    assert relative_error(ours, g["features"]) > 0.05  # the whole vector differs


def test_the_weight_conversion_puts_each_tf_kernel_where_the_layout_says():
    """A TF conv2d kernel [h, w, in, out] over (time x frequency) becomes Conv2d's
    [out, in, h, w]; a conv1d [width, in, out] becomes [out, in, width]; the back-end's
    [7, channels, 1, out] a Conv1d over channels."""
    g = golden("frontend_frame_level.npz")
    loaded = frontend("frame_level", "small", 0)
    load_tf1_weights(loaded, {k[4:]: v for k, v in g.items() if k.startswith("var/")}, [str(n) for n in g["var_names"]])
    k = g["var/conv1d/kernel"]  # [512, 1, 40]
    assert loaded.frame.weight[7, 0, 100].item() == k[100, 0, 7]
    b = g["var/2cnnOut/kernel"]  # [7, 40, 1, 40]
    assert loaded.backend.conv2.weight[5, 11, 3].item() == b[3, 11, 0, 5]
    v = golden("frontend_vgg.npz")["var/2CNN/kernel"]  # [3, 3, 32, 32]: time, freq, in, out
    vgg = frontend("vgg", "small", 0)
    load_tf1_weights(vgg, {k[4:]: x for k, x in golden("frontend_vgg.npz").items() if k.startswith("var/")},
                     [str(n) for n in golden("frontend_vgg.npz")["var_names"]])  # fmt: skip
    assert vgg.convs[1].weight[4, 9, 0, 2].item() == v[0, 2, 9, 4]


CLIPS = ("clip_35s", "clip_3p2s", "clip_29p2s")
FIT = {"repeat": "crop_or_repeat", "zero": "crop_or_zero"}


def our_input(name: str, clip: str, settings: InputSettings) -> np.ndarray:
    """What our pipeline feeds ``name`` for a golden clip: decoded from its WAV file, fitted
    and transformed as ``settings`` say (the run's code path, decoding included)."""
    front = frontend(name)
    signal = load(GOLDEN / "clips" / f"{clip}.wav", max_samples=None)
    fitted = fit_decoded(signal, front, settings)
    batch = [fitted] if len(fitted) != front.input_samples else torch.from_numpy(fitted[None])
    ((_, x),) = list(network_inputs(front, batch, torch.device("cpu"), settings))
    if name == "mfcc":
        with torch.inference_mode():
            return front.features(x.double())[0].numpy()
    return x[0].double().numpy()


def test_the_golden_clips_decode_to_the_originals_samples():
    pre = golden("preprocessing.npz")
    for clip in CLIPS:
        np.testing.assert_array_equal(load(GOLDEN / "clips" / f"{clip}.wav"), pre[f"audio/{clip}"])


@pytest.mark.parametrize("padding,librosa", [("reflect", "old"), ("zeros", "new")])
@pytest.mark.parametrize("clip", CLIPS)
def test_the_frames_stage_gives_the_originals_log_mel(clip, padding, librosa):
    """``old``: what the original computed with the librosa of its day (reflect padding);
    ``new``: the same code under today's librosa defaults (zero padding)."""
    pre = golden("preprocessing.npz")
    for fit, suffix in (("repeat", ""), ("zero", "/zero-pad")):
        key = f"logmel/{librosa}/{clip}{suffix}"
        if key not in pre:  # zero-pad is stored for the short clip only
            continue
        ours = our_input("vgg", clip, InputSettings(FIT[fit], "frames", padding))
        assert ours.shape == (1376, 96)
        assert np.abs(ours - pre[key]).max() < 1e-3, key


@pytest.mark.parametrize("padding,librosa", [("reflect", "old"), ("zeros", "new")])
@pytest.mark.parametrize("clip", CLIPS)
def test_the_frames_stage_gives_the_originals_mfcc_statistics(clip, padding, librosa):
    pre = golden("preprocessing.npz")
    ours = our_input("mfcc", clip, InputSettings("crop_or_repeat", "frames", padding))
    assert relative_error(ours, pre[f"mfcc/{librosa}/{clip}"]) < 1e-4


# Where the clean default (fit the waveform to 352,000 samples, then a zero-padded STFT)
# departs from the original's log-mel: the frames whose windows see a padded or tiled end.
DEFAULT_DIFFERS = {
    "clip_35s": {0, 1375},  # the original's frame 1375 sees real signal beyond the crop; frame 0 its reflection
    "clip_29p2s": {0, *range(1368, 1376)},  # the original tiles frames after 1368, we tile samples
}


@pytest.mark.parametrize("clip", CLIPS)
def test_by_default_the_log_mel_differs_from_the_originals_where_the_clip_is_fitted(clip):
    pre = golden("preprocessing.npz")
    ours = our_input("vgg", clip, InputSettings())
    per_frame = np.abs(ours - pre[f"logmel/old/{clip}"]).max(axis=1)
    differs = set(np.flatnonzero(per_frame > 1e-3).tolist())
    if clip in DEFAULT_DIFFERS:
        assert differs == DEFAULT_DIFFERS[clip]
        assert per_frame.max() > 5.0  # several dB at those frames
    else:  # 151 frames tiled in frames against 150 frames of tiled samples: most frames differ
        assert len(differs) > 1000 and np.median(per_frame) > 1.0


@pytest.mark.parametrize("clip", CLIPS)
def test_by_default_the_mfcc_statistics_differ_from_the_originals(clip):
    """The default takes them over the fitted 350,000 samples, zero-padded; the original over
    the whole clip, reflect-padded: small for a clip near 29 s, large for a 3 s clip tiled."""
    pre = golden("preprocessing.npz")
    largest = np.abs(our_input("mfcc", clip, InputSettings()) - pre[f"mfcc/old/{clip}"]).max()
    assert largest > {"clip_35s": 0.5, "clip_3p2s": 2.0, "clip_29p2s": 0.1}[clip]  # 100x the tolerance at least


def test_the_original_elm_draw_gives_the_golden_hidden_layer_and_predictions():
    from elm_audio.classifiers import ELMClassifier

    g = golden("elm.npz")
    model = ELMClassifier(hidden_units=100, alpha=0.0, hidden_draw="original", targets="plus_minus_one", random_state=2)
    model.fit(g["x_train"], g["y_train"])
    np.testing.assert_allclose(model.w1_.numpy().T, g["hidden_weights"], rtol=0, atol=0)
    np.testing.assert_allclose(model.b1_.numpy(), g["hidden_biases"], rtol=0, atol=0)
    np.testing.assert_array_equal(model.predict(g["x_test"]), g["y_pred"])
    np.testing.assert_array_equal(model.predict(g["x_train"]), g["y_pred_train"])
    assert relative_error(model.decision_function(g["x_test"]), g["decision_test"]) < 1e-6


def test_zero_one_targets_give_the_originals_predictions_through_a_shift_common_to_all_classes():
    """With the golden hidden layer, our default 0/1 targets give decision values
    dec01 = (dec+-1 + H pinv(H) 1) / 2: another scale and a per-sample shift, the same argmax."""
    from elm_audio.classifiers import ELMClassifier

    g = golden("elm.npz")
    model = ELMClassifier(hidden_units=100, alpha=0.0, hidden_draw="original", random_state=2)
    model.fit(g["x_train"], g["y_train"])
    np.testing.assert_array_equal(model.predict(g["x_test"]), g["y_pred"])
    H_test = np.maximum(g["x_test"] @ g["hidden_weights"] + g["hidden_biases"], 0)
    shift = H_test @ np.linalg.pinv(g["hidden_train"]) @ np.ones(len(g["x_train"]))
    np.testing.assert_allclose(model.decision_function(g["x_test"]), (g["decision_test"] + shift[:, None]) / 2, atol=1e-6)
    # the default draw (scaled, torch) is another hidden layer altogether
    default = ELMClassifier(hidden_units=100, alpha=0.0, random_state=2).fit(g["x_train"], g["y_train"])
    assert not np.allclose(default.w1_.numpy().T, g["hidden_weights"])
