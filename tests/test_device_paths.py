"""The layers' plain forms (one convolution and one reduction each: what CUDA takes, see
``frontends.base.plain_forms``) against the CPU's cache-tuned loops: the same features, and the
same gradients where weights=trained takes them; where CUDA is at hand, its features and
gradients against the CPU's.

Without conftest.py (it imports MLflow): the GPU check runs it with ``--noconftest`` on a machine
without MLflow (benchmarks/cuda_check.sh); of tests/helpers it takes only helpers.audio."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from helpers.audio import tone_batch
from torch.overrides import TorchFunctionMode

from elm_audio.config import compose, native_frontends
from elm_audio.devices import convolutions_tuned, denormals_flushed
from elm_audio.frontends import FrontEnd
from elm_audio.frontends.base import forms
from elm_audio.settings.components import build_frontend

# the front-ends with a loop for the CPU: vgg's first block, the frequency-max convolutions
LOOPED = ("vgg", "cnn_7x86", "cnn_7x96", "timbral", "timbral_temporal", "timbral_time")
# frames of the log-mel the front-ends other than vgg (whose pools need all 1,376) are fed here
SHORT = 96
CUDA = torch.cuda.is_available()


def build(name: str, size: str) -> FrontEnd:
    return build_frontend(compose([f"frontend={name}", f"feature_size={size}"]))


def waves(front: FrontEnd, n: int) -> torch.Tensor:
    """n waveforms of the front-end's input length: tones of different pitch in noise."""
    return tone_batch(n, front.input_samples, front.sample_rate)


def spectrogram(front: FrontEnd, n: int, frames: int) -> torch.Tensor:
    """The log-mel of ``waves``, jittered: the stationary tones make near-equal neighbours,
    where the two forms' rounding may keep a different one in a max-pool (either is a valid
    gradient); the jitter leaves every window one clear maximum."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        spec = front.prepare(waves(front, n))[:, :frames]
    return spec + 0.01 * torch.randn(spec.shape, generator=g)


def assert_near(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Each clip's row within ``rtol`` of ``expected``'s in norm, and every value within ``rtol``
    of the row's largest (features of different layers differ in scale by orders)."""
    actual, expected = actual.detach().float().cpu(), expected.detach().float().cpu()
    assert actual.shape == expected.shape
    error = (actual - expected).flatten(1).norm(dim=1) / expected.flatten(1).norm(dim=1)
    assert float(error.max()) <= rtol, f"relative error {float(error.max()):.2e} > {rtol:.0e}"
    scale = expected.flatten(1).abs().amax(dim=1).view(-1, *[1] * (expected.dim() - 1))
    assert bool(((actual - expected).abs() <= rtol * scale).all())


def gradients(front: FrontEnd, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """weights=trained's pass: the features and every weight's gradient of a fixed projection."""
    front.zero_grad(set_to_none=True)
    feats = front.features(x)
    g = torch.Generator().manual_seed(1)
    projection = torch.randn(feats.shape[1:], generator=g).to(feats.device)
    (feats * projection).sum().backward()
    return feats, {name: p.grad for name, p in front.named_parameters() if p.grad is not None}


class WeightShapes(TorchFunctionMode):
    """The weight shapes of every convolution and every F.linear called while inside."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: dict[object, list[tuple[int, ...]]] = {F.conv1d: [], F.conv2d: [], F.linear: []}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.weights:
            self.weights[func].append(tuple(args[1].shape))
        return func(*args, **(kwargs or {}))


def plain_and_loops(front: FrontEnd, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, WeightShapes]:
    """The features in the plain forms and in the CPU's loops, and the weight shapes of the
    plain forms' convolutions and products."""
    with torch.inference_mode():
        with forms(plain=False):
            loops = front.features(x)
        with forms(plain=True), WeightShapes() as shapes:
            plain = front.features(x)
    return plain, loops, shapes


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("name", [*(n for n in LOOPED if n != "vgg"), "temporal"])
def test_spectrogram_forms_agree(name: str, size: str) -> None:
    front = build(name, size)
    plain, loops, shapes = plain_and_loops(front, spectrogram(front, 2, SHORT))
    assert_near(plain, loops, 1e-5)
    # cuDNN's tensor-core kernels are handed filters and bands in multiples of 8 (cnn_7x86
    # large: 3,585 filters over 86 bands), the padding's zeros changing no feature; the temporal
    # filters' products (one_channel_conv1d), taps in multiples of 8 (165 -> 168)
    convolutions, products = shapes.weights[F.conv2d], shapes.weights[F.linear]
    assert all(w[0] % 8 == 0 and w[1] % 8 == 0 for w in convolutions), convolutions
    assert all(w[1] % 8 == 0 for w in products), products
    assert (len(convolutions) > 0, len(products)) == (name != "temporal", 4 if name in ("temporal", "timbral_temporal", "timbral_time") else 0)


@pytest.mark.parametrize("size", ["small", "large"])
def test_vgg_forms_agree(size: str) -> None:
    """Every block (large: 717 filters a layer, 720 in the plain forms; one clip, 1.4 s)."""
    front = build("vgg", size)
    plain, loops, shapes = plain_and_loops(front, spectrogram(front, 1 if size == "large" else 2, 1376))
    assert_near(plain, loops, 1e-5)
    weights = shapes.weights[F.conv2d]
    assert [w[0] % 8 for w in weights] == [0] * 5, weights
    assert [w[1] for w in weights] == [1] + [weights[0][0]] * 4  # the next layer takes the padded maps


@pytest.mark.parametrize("size", ["small", "large"])
def test_temporal_filters_on_the_cpu_a_product_in_inference_the_convolution_under_autograd(size: str) -> None:
    """one_channel_conv1d's CPU forms: inference multiplies the windows of the envelope with the
    filters (products.linear: F.linear, or a 1x1 F.conv2d where oneDNN is faster), no 1-D
    convolution; weights=trained keeps the convolution. The same features."""
    front = build("temporal", size)
    x = spectrogram(front, 2, SHORT)
    with forms(plain=False):
        with torch.inference_mode(), WeightShapes() as inference:
            products = front.features(x)
        with WeightShapes() as training:
            convolved = front.trainable().features(x)
    taps = [conv.kernel_size[0] for conv in front.temporal]
    assert not inference.weights[F.conv1d]
    assert [w[1] for w in inference.weights[F.linear] + inference.weights[F.conv2d]] == taps
    assert [w[2] for w in training.weights[F.conv1d]] == taps
    assert_near(products, convolved, 1e-5)


def integer_valued(front: FrontEnd, x: torch.Tensor) -> torch.Tensor:
    """The spectrogram and the frequency-max filters rounded to small integers, so that every
    product and window sum is exact in float32 whatever the order of summation: both forms then
    see the same maxima, ties included (the first offset wins them in both), where a near tie of
    real values (a relative gap of 7e-7 in these clips) may go either way with the rounding."""
    with torch.no_grad():
        for conv in [*getattr(front, "timbral", []), *filter(None, [getattr(front, "conv", None)])]:
            conv.weight.copy_((2 * conv.weight / conv.weight.std()).round())
            conv.bias.zero_()
    return (x / x.std()).mul(4).round()


@pytest.mark.parametrize(
    "name, size",
    # timbral_temporal small trains through banded_max_conv, large through WindowMax
    [*((n, s) for n in ("timbral_temporal", "cnn_7x86") for s in ("small", "large")), ("vgg", "small")],
)
def test_training_forms_agree(name: str, size: str) -> None:
    front = build(name, size).trainable()
    x = spectrogram(front, 2, 1376 if name == "vgg" else SHORT)
    if name != "vgg":
        x = integer_valued(front, x)
    with forms(plain=False):
        loop_feats, loop_grads = gradients(front, x)
    with forms(plain=True):
        plain_feats, plain_grads = gradients(front, x)
    assert_near(plain_feats, loop_feats, 1e-5)
    assert plain_grads.keys() == loop_grads.keys() and loop_grads
    for key, grad in loop_grads.items():
        assert_near(plain_grads[key][None], grad[None], 1e-4)


def test_vgg_large_blocks_train_through_their_zero_filters() -> None:
    """weights=trained on CUDA: vgg large's first two blocks with their filters padded (717 ->
    720) give the CPU forms' maps and the same gradients to the real weights, on a small map.
    In float64: among the second block's 23,040 pooling windows, float32's rounding (the two
    forms sum in different orders) flipped which of two near-equal values a window kept on an
    Intel Xeon, sending that window's gradient elsewhere (2e-3 of the weights' gradient)."""
    front = build("vgg", "large").trainable().double()
    x = spectrogram(front, 1, 32)[:, None].double()  # (1, 1, 32 frames, 96 mels)
    projection = None
    results = {}
    for plain in (False, True):
        front.zero_grad(set_to_none=True)
        with forms(plain):
            first = front.block(0, x)
            assert first.shape[1] == (720 if plain else 717)
            h = front.block(1, first)[:, :717]
        if projection is None:
            projection = torch.randn(h.shape, generator=torch.Generator().manual_seed(3), dtype=h.dtype)
        (h * projection).sum().backward()
        results[plain] = h.detach(), [front.convs[i].weight.grad.clone() for i in (0, 1)]
    assert_near(results[True][0], results[False][0], 1e-6)
    for plain_grad, loop_grad in zip(results[True][1], results[False][1]):
        assert_near(plain_grad[None], loop_grad[None], 1e-6)


def test_cudnn_autotuner_only_while_computing_on_cuda() -> None:
    """Extraction and training on CUDA turn cuDNN's autotuner on (devices.convolutions_tuned) and
    leave the user's setting as it was, also after an error; on the CPU they touch nothing."""
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        with convolutions_tuned(torch.device("cpu")):
            assert torch.backends.cudnn.benchmark is False
        with pytest.raises(KeyboardInterrupt), convolutions_tuned(torch.device("cuda")):
            assert torch.backends.cudnn.benchmark is True
            raise KeyboardInterrupt
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before


@pytest.fixture
def two_threads() -> Iterator[None]:
    """torch's intra-op pool two threads wide while inside (the suite runs one a process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_training_on_the_cpu_flushes_denormals_and_restores_torchs_default(two_threads: None) -> None:
    """devices.denormals_flushed: on the CPU a float32 denormal (below 1.2e-38) reads as zero
    while inside, on every thread of torch's pool (a product split between two threads, which
    exist before the context is entered), and computes as itself again after, also after an
    error; for CUDA the CPU's arithmetic is left alone."""
    many = torch.full((1 << 20,), 1e-39)  # torch splits an op over 32,768 values between threads
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")

    def denormals_left() -> int:
        return int((many * 1.0).count_nonzero())

    assert denormals_left() == many.numel()  # the pool's threads now exist
    with denormals_flushed(torch.device("cpu")):
        assert denormals_left() == 0
    assert denormals_left() == many.numel()
    with pytest.raises(KeyboardInterrupt), denormals_flushed(torch.device("cpu")):
        raise KeyboardInterrupt
    assert denormals_left() == many.numel()
    with denormals_flushed(torch.device("cuda")):
        assert denormals_left() == many.numel()


@pytest.fixture
def strict_fp32() -> Iterator[None]:
    """TF32 off for cuBLAS and cuDNN while inside: float32 on CUDA as on the CPU."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        matmul.fp32_precision, conv.fp32_precision = before


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", native_frontends())
def test_cuda_features_match_cpu(name: str, strict_fp32: None) -> None:
    front = build(name, "small").eval()
    x = waves(front, 2)
    with torch.inference_mode():
        cpu = front(x)
        front.cuda()
        fp32 = front(x.cuda())
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = front(x.cuda())
    assert_near(fp32, cpu, 2e-5)
    assert_near(bf16, cpu, 2e-2)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("name", ["timbral_temporal", "cnn_7x86", "vgg"])
def test_cuda_training_matches_cpu(name: str, strict_fp32: None) -> None:
    front = build(name, "small").trainable()
    x = spectrogram(front, 2, 1376)
    cpu_feats, cpu_grads = gradients(front, x)
    cuda_feats, cuda_grads = gradients(front.cuda(), x.cuda())
    assert_near(cuda_feats, cpu_feats, 2e-5)
    for key, grad in cpu_grads.items():
        assert_near(cuda_grads[key][None], grad[None], 1e-3)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_vgg_runs_no_loop() -> None:
    """One convolution and one max-pool's amax a block: no product per few pooling windows."""
    front = build("vgg", "small").eval()
    x = spectrogram(front, 2, 1376).cuda()
    front.cuda()
    with torch.inference_mode(), torch.profiler.profile() as prof:
        front.features(x)
    counts = {e.key: e.count for e in prof.key_averages()}
    assert counts.get("aten::mm", 0) == 0
    assert 0 < counts.get("aten::amax", 0) <= 2 * len(front.convs)  # the loop's: 129 at this width
