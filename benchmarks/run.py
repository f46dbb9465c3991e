"""How close elm_audio gets to this machine: extraction against the matmul rate, decoding
hidden behind compute, memory while streaming, and the classifiers against their plain versions.

    python benchmarks/run.py --json out.json [--quick] [--folder DIR] [--device cuda]

Everything is measured in this one process (the decoding workers are its children) and written
as JSON; a table is printed. --quick measures four front-ends and fewer clips (a few minutes).
--folder DIR adds the bf16 accuracy check on a folder of your recordings (one sub-folder per class).
--device cuda measures the GPU instead (under 5 minutes on an H200): the large front-ends' networks
against the measured strict-fp32 and bf16 product rates, CUDA's features against the CPU's, the
kernels vgg launches, and extraction against decoding alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from sklearn.datasets import make_classification
from sklearn.svm import SVC

from elm_audio.classifiers import ELMClassifier, KernelSVC, svm
from elm_audio.products import mkl_runs_avx2_only, onednn_linear
from elm_audio.config import compose, native_frontends
from elm_audio.datasets import Clip
from elm_audio.datasets.synth import synth_clip
from elm_audio.devices import convolutions_tuned, denormals_flushed, give_back_memory, keep_freed_memory
from elm_audio.evaluation.protocols import evaluate, make_splits
from elm_audio.extraction.chunks import layout
from elm_audio.extraction.defaults import num_workers, usable_cores
from elm_audio.extraction.extract import ClipAudio, Decoder, ExtractSettings, extract
from elm_audio.extraction.inputs import InputSettings
from elm_audio.extraction.precision import (
    autocast,
    cpu_has_bf16_units,
    cpu_matrix_features,
    effective_precision,
    network_features,
)
from elm_audio.frontends.base import forms
from elm_audio.frontends.profile import profile
from elm_audio.settings.components import (
    build_classifier,
    build_dataset,
    build_frontend,
)

REQUIRED = ("vgg", "cnn_7x86", "sample_level", "timbral_temporal")
CPU = torch.device("cpu")
NOTES = {
    "limits": "fp32_limit_gflops: the faster of torch.matmul's and oneDNN's (a 1x1 convolution) float32 "
    "products; bf16_limit_gflops: the faster of the bf16 product and vgg's large 3x3 convolution in bf16 with "
    "channels-last maps. cpu_features: the /proc/cpuinfo flags of the bf16 units (amx_bf16, avx512_bf16) and "
    "torch's CPU capability and vendor; bf16_computes_in: what precision=bf16 computes in on this CPU (fp32 "
    "without those units, or on an Intel CPU without AMX, where bf16 runs no faster). The bf16 columns "
    "measure the bf16 path wherever the CPU has the units, even where runs compute in fp32.",
    "frontends": "each front-end's forward pass in fp32 and in bf16 (the extraction's path: weights in bf16 "
    "ahead of time, bf16 inputs), alternating rounds, the median and [min, max] of the rates; ratio: over the "
    "fp32 limit, bf16_ratio: over the bf16 limit; bf16_relative_difference: |bf16 - fp32| / |fp32| of the "
    "features (Frobenius norm). training: a weights=trained step (forward, backward, Adam) at batch 2, "
    "counted as 3x the forward FLOPs.",
    "ratio_matmul": "gflops / gemm_gflops; gflops counts the network's multiply-adds x 2 from its input "
    "(log-mel or waveform; the float64 STFT is not counted). gemm_gflops is torch.matmul's fp32 rate "
    "(MKL sgemm, which runs AVX2 code on AMD CPUs); onednn_gemm_gflops is the same product as a 1x1 "
    "convolution (oneDNN, AVX-512 where the CPU has it), the float32 limit the convolutions really "
    "run against: ratio_onednn is gflops over that rate. The classifiers use the oneDNN product on AMD CPUs "
    "and torch.matmul elsewhere (machine.classifier_product).",
    "timbral_temporal": "vertical filters take one of two forms by shape: window products (every window at "
    "every frequency offset times every filter, one 2-D product per cache-sized chunk, maximized in the cache) "
    "for the 1-frame and many-filter layers, and in training for all (the filters' gradient one product, "
    "through oneDNN's backward-weights kernel on AMD); 1-D convolutions over time with the mel bands as "
    "channels, one per offset, with a running maximum, for the others. The 1-frame filters (inner dimension "
    "38 or 86) stay below the GEMM rate whatever the formulation.",
    "vgg": "the first block (one input channel, 717 maps of 1,376 x 96) is memory-bound as a convolution: "
    "written as 2-D convolutions 32 frames at a time, pooled at once, it took 0.74 s of a 2-clip batch (a third "
    "of vgg, under 1% of its FLOPs), because the unpooled map is written and read back. It is now one product per "
    "few pooling windows (each window's 6 x 4 inputs times the kernel placed at its 8 positions), maximized while "
    "the products are in the cache (2 MB chunks): 0.22 s, the same outputs to 1e-7, maps handed on in the next "
    "convolution's layout (channels-last in bf16).",
    "sample_level": "its 3-tap convolutions over 512 x 116,666 maps ran as 1-D convolutions on channels-first "
    "maps, which oneDNN reorders to its own layout and back on every call (0.48 of the oneDNN rate). The maps "
    "are now kept channels-last: channels-last 2-D convolutions, the stride-3 stem as a product over "
    "three-sample frames, the max-pool as a maximum over a reshaped view (1.4x).",
    "frame_level": "the residual back-end's 7-tap convolutions over 896 channels are GEMM-bound; the frame "
    "convolution (one input channel, stride 32) is not.",
    "small_frontends": "each small front-end's extraction (batch 8, a decoding thread per core: the CPU's "
    "defaults) on WAV and MP3 clips (29.5 s, 44.1 kHz stereo) against decoding alone (decode, resample to 12 kHz, "
    "fit: a decoding thread's work, in one thread) and its network alone on the clips decoded beforehand (torch's "
    "threads). bound: the lowest of decoding (one thread's rate times the threads, at most one a core), the "
    "network alone, and the shared cores (the cores over a clip's core time: decoding's plus the network's "
    "seconds a clip times its threads); of_decoding: extraction / one thread's decoding; of_bound: extraction / "
    "the bound.",
    "end_to_end": "decoding (soundfile) and resampling (soxr) run in decoding threads (the CPU's default: one a "
    "core) at low priority, "
    "outside the GIL, while the network computes. ratio: the median over rounds of extraction / network-only "
    "clips/s, each round's two runs adjacent in time; steady_ratio: the same once the pipeline runs (median "
    "batch times after the first); start_s: what an extraction pays once (the first batch's decoding, which "
    "nothing overlaps), amortized over a real dataset's thousands of clips.",
}


def finish(device: torch.device) -> None:
    """Wait for the work queued on ``device``: a CUDA timing ends when its kernels do."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn, reps: int = 3, device: torch.device = CPU) -> float:
    fn()
    times = []
    for _ in range(reps):
        finish(device)
        start = time.perf_counter()
        fn()
        finish(device)
        times.append(time.perf_counter() - start)
    return min(times)


def cpu_model() -> str:
    """The CPU's name, as Linux gives it (the GEMM rates depend on it more than on anything else)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def gemm_gflops(
    product=torch.matmul, dtype: torch.dtype = torch.float32, device: torch.device = CPU, sizes: tuple[int, ...] = (2048, 4096)
) -> float:
    rates = []
    for n in sizes:
        a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
        rates.append(2 * n**3 / best_time(lambda a=a, b=b: product(a, b), 4, device) / 1e9)
    return max(rates)


def bf16_conv_gflops() -> float:
    """vgg's main convolution at the large size (717 -> 717 channels, 3x3, 344 x 48 maps) in bf16,
    maps and weights channels-last: the layout oneDNN's bf16 kernels run fastest on."""
    cl = torch.channels_last
    x = torch.randn(1, 717, 344, 48).to(torch.bfloat16).contiguous(memory_format=cl)
    w = (torch.randn(717, 717, 3, 3) * 0.02).to(torch.bfloat16).contiguous(memory_format=cl)
    with torch.inference_mode():
        seconds = best_time(lambda: torch.nn.functional.conv2d(x, w, padding=1), 3)
    return 2 * 717 * 717 * 9 * 344 * 48 / seconds / 1e9


def limits() -> dict:
    """The float32 limit (the faster of torch.matmul and the oneDNN 1x1 convolution) and the
    bf16 limit (the same product in bf16, or a large channels-last bf16 convolution)."""
    rates = {
        "gemm_gflops": gemm_gflops(),
        "onednn_gemm_gflops": gemm_gflops(onednn_linear),
        "bf16_gemm_gflops": gemm_gflops(dtype=torch.bfloat16),
        "bf16_conv_gflops": bf16_conv_gflops(),
    }
    rates = {k: round(v, 1) for k, v in rates.items()}
    rates["fp32_limit_gflops"] = max(rates["gemm_gflops"], rates["onednn_gemm_gflops"])
    rates["bf16_limit_gflops"] = max(rates["bf16_gemm_gflops"], rates["bf16_conv_gflops"])
    return rates


def release_memory() -> None:
    """Give freed memory back to the system between measurements, so that one front-end's
    large maps do not leave the next one with a fragmented heap to fault in again."""
    gc.collect()
    give_back_memory()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def spread(values: list[float]) -> list[float]:
    return [round(min(values), 3), round(max(values), 3)]


def computing(front: torch.nn.Module, device: torch.device, precision: str):
    """The network in ``precision`` as extraction computes it: on the CPU, bf16 weights ahead of
    time (precision.network_features); elsewhere under autocast."""
    compute = network_features(front, device, precision)
    if device.type == "cpu":
        return compute

    def autocast_compute(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, precision):
            return compute(x)

    return autocast_compute


def network_rates(name: str, batch: int, rounds: int, limits: dict, device: torch.device = CPU) -> dict:
    """A large front-end's forward rate in fp32 and bf16 (the path extraction takes: bf16 weights
    ahead of time on the CPU, autocast on CUDA), in alternating rounds (this machine's speed
    drifts): medians and the spread; the bf16 features' relative difference from fp32's
    (Frobenius norm) on the same input."""
    release_memory()
    front = build_frontend(compose([f"frontend={name}", "feature_size=large"])).eval()
    info = profile(front)
    front.to(device)
    computes = {p: computing(front, device, p) for p in ("fp32", "bf16")}
    x = (torch.randn(batch, front.input_samples) * 0.1).to(device)
    times: dict[str, list[float]] = {p: [] for p in computes}
    with torch.inference_mode():
        spec = front.prepare(x)
        feats = {p: compute(spec) for p, compute in computes.items()}  # also the warm-up
        for r in range(rounds):
            for p in list(computes)[:: 1 if r % 2 == 0 else -1]:
                finish(device)
                start = time.perf_counter()
                computes[p](spec)
                finish(device)
                times[p].append(time.perf_counter() - start)
        prepare_s = best_time(lambda: front.prepare(x), 2, device)
    g = info["gflops_per_clip"] * batch
    row = {"gflops_per_clip": round(info["gflops_per_clip"], 2)}
    for p, key in (("fp32", ""), ("bf16", "bf16_")):
        seconds = float(np.median(times[p]))
        row[f"{key}clips_per_s"] = round(batch / (seconds + prepare_s), 3)
        row[f"{key}network_clips_per_s"] = round(batch / seconds, 3)
        row[f"{key}gflops"] = round(g / seconds, 1)
        row[f"{key}gflops_spread"] = spread([g / t for t in times[p]])
    row["ratio"] = round(row["gflops"] / limits["fp32_limit_gflops"], 2)
    for key, limit in (("ratio_matmul", "gemm_gflops"), ("ratio_onednn", "onednn_gemm_gflops")):
        if limit in limits:  # the CPU's two float32 products
            row[key] = round(row["gflops"] / limits[limit], 2)
    row["bf16_ratio"] = round(row["bf16_gflops"] / limits["bf16_limit_gflops"], 2)
    row["bf16_ratio_to_fp32_limit"] = round(row["bf16_gflops"] / limits["fp32_limit_gflops"], 2)
    row["bf16_speedup"] = round(row["bf16_gflops"] / row["gflops"], 2)
    row["bf16_relative_difference"] = float(f"{float((feats['bf16'] - feats['fp32']).norm() / feats['fp32'].norm()):.2e}")
    return row


def training_rates(name: str, batch: int, steps: int, limits: dict) -> dict:
    """weights=trained's step (features, a linear softmax head, cross-entropy, backward, Adam) on
    a large front-end, fp32 and bf16 autocast with float32 master weights (bf16 where the CPU has
    the units), in alternating rounds. A step costs about 3x the forward FLOPs."""
    from elm_audio.run.training import Probe

    release_memory()
    info = profile(build_frontend(compose([f"frontend={name}", "feature_size=large"])))
    row = {}
    precisions = ("fp32", "bf16") if cpu_has_bf16_units() else ("fp32",)
    probes = {}
    for p in precisions:
        front = build_frontend(compose([f"frontend={name}", "feature_size=large"])).trainable()
        probe = Probe(front, info["feature_dim"], 10)
        if p == "bf16":
            probe = probe.to(memory_format=torch.channels_last)
        probes[p] = (probe, torch.optim.Adam(probe.parameters(), lr=1e-4))
    with torch.no_grad():
        x = probes["fp32"][0].frontend.prepare(torch.randn(batch, probes["fp32"][0].frontend.input_samples) * 0.1)
    y = torch.arange(batch) % 10
    times: dict[str, list[float]] = {p: [] for p in precisions}

    def step(p: str) -> None:
        probe, optimizer = probes[p]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=p == "bf16"):
            loss = torch.nn.functional.cross_entropy(probe(x).float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with denormals_flushed(CPU):  # as a run trains
        for p in precisions:  # warm-up
            step(p)
        for r in range(steps):
            for p in precisions[:: 1 if r % 2 == 0 else -1]:
                start = time.perf_counter()
                step(p)
                times[p].append(time.perf_counter() - start)
    flops = 3 * info["gflops_per_clip"] * batch
    for p in precisions:
        rate = flops / float(np.median(times[p]))
        limit = limits["bf16_limit_gflops" if p == "bf16" else "fp32_limit_gflops"]
        row[p] = {"steps_per_s": round(1 / float(np.median(times[p])), 3), "gflops": round(rate, 1),
                  "ratio": round(rate / limit, 2), "gflops_spread": spread([flops / t for t in times[p]])}  # fmt: skip
    release_memory()
    return row


class RssSampler(threading.Thread):
    """Peak resident memory of this process, sampled every 20 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0
        self.samples: list[int] = []
        self.running = True

    def run(self):
        while self.running:
            with open("/proc/self/status") as fh:
                rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
            self.peak = max(self.peak, rss)
            self.samples.append(rss)
            time.sleep(0.02)

    def stop(self) -> float:
        self.running = False
        self.join()
        return self.peak / 1024


def write_folder(root: Path, n: int, kinds: tuple[str, ...] = ("wav", "mp3")) -> list[Clip]:
    """n clips of 29.2 s (the input length), 44.1 kHz stereo, in turn of each format of ``kinds``
    (WAV, MP3)."""
    root.mkdir(parents=True, exist_ok=True)
    clips = []
    for i in range(n):
        mono = synth_clip(("straight", "waltz")[i % 2], ("tone", "noise")[i % 2], i, 29.5, sr=44_100)
        ext = kinds[i % len(kinds)]
        path = root / f"clip{i:03d}.{ext}"
        kw = {"format": "MP3", "subtype": "MPEG_LAYER_III"} if ext == "mp3" else {}
        sf.write(path, np.stack([mono, mono], 1), 44_100, **kw)
        clips.append(Clip(f"clip{i}", str(path), ext))
    return clips


class TimedSink:
    """The feature file extract() writes to, noting when each batch arrives."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.times = [time.perf_counter()]

    def __setitem__(self, rows, values):
        self.array[rows] = values
        self.times.append(time.perf_counter())

    def intervals(self) -> np.ndarray:
        return np.diff(self.times)


def end_to_end(name: str, clips: list[Clip], batch: int, rounds: int) -> dict:
    """The real extraction (a decoding worker, streaming to a memory-mapped file) against the
    same loop over the same clips decoded beforehand: what decoding costs when it overlaps.

    The two run alternately, ``rounds`` times, and each round's ratio pairs runs that are
    adjacent in time (this machine's speed drifts by 10-15% over tens of seconds). Batch
    arrival times split an extraction into its start (decoding the first batch: paid once per
    extraction) and its steady rate.
    """
    from elm_audio.sound.decode import fit_length, load

    release_memory()
    front = build_frontend(compose([f"frontend={name}", "feature_size=large"])).eval()
    dim = profile(front)["feature_dim"]
    waves = torch.from_numpy(np.stack([fit_length(load(c.path), front.input_samples) for c in clips]))
    out = np.lib.format.open_memmap(Path(tempfile.mkdtemp()) / "f.npy", mode="w+", dtype=np.float32, shape=(len(clips), dim))
    settings = ExtractSettings(batch_size=batch, num_workers=num_workers(), progress=False)
    sampler = RssSampler()
    sampler.start()
    with torch.inference_mode():
        front(waves[:batch])  # warm-up: oneDNN builds its kernels
    network, extraction = [], []
    during: list[int] = []

    def network_only() -> None:
        sink = TimedSink(out)
        with torch.inference_mode():
            for i in range(0, len(clips), batch):
                sink[i : i + batch] = front.features(front.prepare(waves[i : i + batch])).numpy()
        network.append(sink.intervals())

    def extraction_run() -> None:
        first = len(sampler.samples)
        sink = TimedSink(out)
        extract(front, clips, sink, torch.device("cpu"), settings)
        extraction.append(sink.intervals())
        during[:] = sampler.samples[first:]

    for r in range(rounds):  # ABBA order: a steady drift in speed cancels out
        for run in (network_only, extraction_run)[:: 1 if r % 2 == 0 else -1]:
            run()
    peak = sampler.stop()
    middle = len(during) // 2
    decode_start = time.perf_counter()
    for c in clips:
        load(c.path, max_samples=front.input_samples)

    def rate(runs: list[np.ndarray]) -> list[float]:
        return [len(clips) / r.sum() for r in runs]

    def steady(runs: list[np.ndarray]) -> float:  # median time of a batch after the first
        return float(np.median(np.concatenate([r[1:] for r in runs])))

    return {
        "frontend": name,
        "clips": len(clips),
        "rounds": rounds,
        "clips_per_s": round(float(np.median(rate(extraction))), 3),
        "network_clips_per_s": round(float(np.median(rate(network))), 3),
        "ratio": round(float(np.median(np.divide(rate(extraction), rate(network)))), 3),
        "round_ratios": [round(float(r), 3) for r in np.divide(rate(extraction), rate(network))],
        "steady_ratio": round(float(steady(network) / steady(extraction)), 3),
        "start_s": round(float(np.median([r[0] for r in extraction]) - steady(network)), 2),
        "decode_clips_per_s_one_core": round(len(clips) / (time.perf_counter() - decode_start), 2),
        "peak_rss_mb": round(peak),
        # streaming: the second half of an extraction must not need more memory than the first
        "peak_rss_first_half_mb": round(max(during[:middle]) / 1024),
        "peak_rss_second_half_mb": round(max(during[middle:]) / 1024),
    }


def small_frontends(names: tuple[str, ...], clips: list[Clip], batch: int = 8) -> dict:
    """What bounds the small front-ends (about 120 values a clip): each one's extraction with the
    default settings (batch 8, a decoding thread per core) against decoding alone (decode,
    resample, fit: a decoding thread's work, in this thread) and against its network alone on the
    same clips decoded beforehand (torch's threads); ``bound``: the lowest of the three ceilings
    (see NOTES); ``of_decoding`` is extraction over one thread's decoding rate."""
    from elm_audio.extraction.inputs import InputSettings

    workers, cores, threads = num_workers(), usable_cores(), torch.get_num_threads()
    rows = {}
    for name in names:
        release_memory()
        front = build_frontend(compose([f"frontend={name}", "feature_size=small"])).eval()
        audio = ClipAudio(clips, front, InputSettings())
        start = time.perf_counter()
        waves = torch.from_numpy(np.stack([audio[i][1] for i in range(len(clips))]))
        decode_s = time.perf_counter() - start
        with torch.inference_mode():
            front(waves[:batch])  # warm-up
            start = time.perf_counter()
            for i in range(0, len(clips), batch):
                front(waves[i : i + batch])
            network_s = time.perf_counter() - start
        out = np.empty((len(clips), profile(front)["feature_dim"]), dtype=np.float32)
        start = time.perf_counter()
        extract(front, clips, out, CPU, ExtractSettings(batch_size=batch, num_workers=workers, progress=False))
        extract_s = time.perf_counter() - start
        decode, network, extraction = len(clips) / decode_s, len(clips) / network_s, len(clips) / extract_s
        ceilings = {
            "decoding": decode * min(workers, cores),
            "network": network,
            "shared cores": cores / (1 / decode + threads / network),
        }
        bound = min(ceilings, key=ceilings.get)
        rows[name] = {
            "decode_clips_per_s": round(decode, 1),
            "network_clips_per_s": round(network, 1),
            "clips_per_s": round(extraction, 1),
            "decoding_threads": workers,
            "ceilings_clips_per_s": {k: round(v, 1) for k, v in ceilings.items()},
            "bound": bound,
            "of_decoding": round(extraction / decode, 2),
            "of_bound": round(extraction / ceilings[bound], 2),
        }
    return rows


def classifiers(n_train: int = 3600, n_test: int = 900, dim: int = 3585) -> dict:
    X, y = make_classification(n_train + n_test, dim, n_informative=120, n_redundant=200, n_classes=10,
                               n_clusters_per_class=2, class_sep=2.0, random_state=0)  # fmt: skip
    X = ((X - X[:n_train].mean(0)) / X[:n_train].std(0)).astype(np.float32)
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]

    def timed(make, reps: int):
        best, pred = np.inf, None
        for _ in range(reps):
            svm._GRAM_CACHE.clear()  # a fair repeat: no kernel matrix kept from the last fit
            start = time.perf_counter()
            pred = make().fit(Xtr, ytr).predict(Xte)
            best = min(best, time.perf_counter() - start)
        return round(best, 2), round(float(np.mean(pred == yte)), 4)

    def faithful_elm():
        class PinvELM:  # the original code's: float64 pseudo-inverse
            def fit(self, X, y):
                rng = np.random.default_rng(0)
                self.w = rng.standard_normal((X.shape[1], 2500)) / np.sqrt(X.shape[1])
                self.b = rng.standard_normal(2500)
                self.classes = np.unique(y)
                H = np.maximum(X.astype(np.float64) @ self.w + self.b, 0)
                self.beta = np.linalg.pinv(H) @ (y[:, None] == self.classes).astype(np.float64)
                return self

            def predict(self, X):
                return self.classes[(np.maximum(X.astype(np.float64) @ self.w + self.b, 0) @ self.beta).argmax(1)]

        return PinvELM()

    out = {"shape": [n_train, dim], "timing": "fit + predict; best of 3, one run for libsvm's SVC (about 30 s)"}
    for key, make in {
        "svm_ours": lambda: KernelSVC(C=2.0, gamma="auto", dtype="float32"),
        "svm_ours_float64": lambda: KernelSVC(C=2.0, gamma="auto", dtype="float64"),
        "svm_libsvm": lambda: SVC(C=2.0, gamma="auto"),
        "elm_ours": lambda: ELMClassifier(hidden_units=2500, alpha=1.0, random_state=0),
        "elm_pinv_float64": faithful_elm,
    }.items():
        seconds, acc = timed(make, 1 if key == "svm_libsvm" else 3)
        out[key] = {"fit_predict_s": seconds, "accuracy": acc}
    out["svm_speedup"] = round(out["svm_libsvm"]["fit_predict_s"] / out["svm_ours"]["fit_predict_s"], 1)
    out["elm_speedup"] = round(out["elm_pinv_float64"]["fit_predict_s"] / out["elm_ours"]["fit_predict_s"], 1)
    return out


def precision_accuracy(overrides: list[str], label: str) -> dict:
    """Test accuracy with fp32 and bf16 features, same data and classifier."""
    cfg = compose(overrides)
    index = build_dataset(cfg).index()
    front = build_frontend(cfg).eval()
    dim = profile(front)["feature_dim"]
    y = np.array([c.label for c in index.clips])
    result = {"data": label, "frontend": cfg.frontend.name, "feature_size": cfg.feature_size.name}
    for precision in ("fp32", "bf16"):
        feats = np.zeros((len(index.clips), dim), np.float32)
        start = time.perf_counter()
        extract(front, index.clips, feats, torch.device("cpu"),
                ExtractSettings(progress=False, num_workers=1, precision=precision, inputs=InputSettings(cfg.audio.fit)))  # fmt: skip
        seconds = time.perf_counter() - start
        ev = evaluate(lambda: build_classifier(cfg.classifier, 0), feats, y, make_splits(index, "honest"))
        result[precision] = {"test_accuracy": round(ev.metrics["test_accuracy"], 4), "extract_s": round(seconds, 1)}
        result.setdefault("features", {})[precision] = feats
    full, half = result.pop("features").values()
    result["features_relative_difference"] = float(f"{np.linalg.norm(half - full) / np.linalg.norm(full):.2e}")
    result["accuracy_change_points"] = round(100 * (result["bf16"]["test_accuracy"] - result["fp32"]["test_accuracy"]), 2)
    result["speedup"] = round(result["fp32"]["extract_s"] / result["bf16"]["extract_s"], 2)
    return result


CUDA_NOTES = {
    "limits": "fp32_limit_gflops: torch.matmul's float32 rate with TF32 off (strict IEEE float32, cuBLAS), "
    "the best of two sizes; bf16_limit_gflops: the same product in bf16. Every fp32 figure here has TF32 off "
    "for products and cuDNN convolutions.",
    "frontends": "each large front-end's network (from its input, the log-mel or waveform, computed once) "
    "at batch 64, fp32 and bf16 autocast (extraction's path on CUDA: cuDNN's autotuner on, "
    "devices.convolutions_tuned), alternating rounds: medians and the spread. gflops counts the network's "
    "multiply-adds x 2 as the CPU's table does (frontends.profile).",
    "kernels": "each large front-end's forward at batch 64 per precision: best of 3 with cuDNN's heuristic pick "
    "of algorithms (heuristic_s) and with its autotuner (autotuned_s), and the autotuned forward's CUDA kernels "
    "with the most self time (the profiler's), each with its share of all kernels' time (kernels_ms).",
    "correctness": "max over two clips of |cuda - cpu| / |cpu| (per clip, Frobenius norm) of every front-end's "
    "features from the same waveforms, the CPU's in fp32: CUDA fp32 (TF32 off) and bf16 autocast.",
    "vgg_kernels": "the profiler's count of operator calls and CUDA kernels in one forward of vgg large "
    "(batch 2) in the plain forms CUDA takes and in the CPU's loops forced on CUDA "
    "(frontends.base.forms), each with its time.",
    "extraction": "extract() on the same WAV clips (44.1 kHz stereo, 29.5 s) with num_workers decoding "
    "threads and batch_size clips a batch, in the chunks a run cuts them into (chunks.layout) with one "
    "extract.Decoder across them, as a run computes them, against decoding alone: the same decoding threads "
    "and batches with nothing computed. ratio: extraction over decoding alone; network_clips_per_s: the "
    "network and its input at batch 64 (frontends); bound: the slower of the two, per precision; "
    "bf16_threads_per_chunk_clips_per_s: bf16 with decoding threads of each chunk's own (before the Decoder "
    "outlived a chunk).",
}


def strict_fp32() -> None:
    """TF32 off for cuBLAS products and cuDNN convolutions: float32 figures are IEEE float32."""
    if hasattr(torch.backends.cudnn, "conv"):  # torch >= 2.9 (its legacy flags may not be mixed in)
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def cuda_limits(device: torch.device) -> dict:
    """The strict-float32 and bf16 limits: torch.matmul's rates on large squares."""
    sizes = (8192, 16384)
    return {
        "fp32_limit_gflops": round(gemm_gflops(dtype=torch.float32, device=device, sizes=sizes), 1),
        "bf16_limit_gflops": round(gemm_gflops(dtype=torch.bfloat16, device=device, sizes=sizes), 1),
    }


def relative_error(features: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest over clips of |features - reference| / |reference| (Frobenius norms)."""
    features, reference = features.float().cpu(), reference.float().cpu()
    return float(((features - reference).norm(dim=1) / reference.norm(dim=1)).max())


def cuda_correctness(name: str, size: str, device: torch.device, clips: int = 2) -> dict:
    """One front-end's CUDA features (fp32, bf16 autocast) against the CPU's fp32 features."""
    release_memory()
    front = build_frontend(compose([f"frontend={name}", f"feature_size={size}"])).eval()
    x = torch.randn(clips, front.input_samples, generator=torch.Generator().manual_seed(0)) * 0.1
    with torch.inference_mode():
        cpu = front(x)
        front.to(device)
        row = {p: relative_error(computing(front, device, p)(front.prepare(x.to(device))), cpu) for p in ("fp32", "bf16")}
    return {p: float(f"{e:.2e}") for p, e in row.items()}


def vgg_kernels(device: torch.device, batch: int = 2) -> dict:
    """What one forward of vgg large launches on ``device`` in the plain forms and in the CPU's
    loops (forced): the profiler's operator counts, its CUDA kernels, and the forward's time."""
    release_memory()
    front = build_frontend(compose(["frontend=vgg", "feature_size=large"])).eval().to(device)
    x = (torch.randn(batch, front.input_samples) * 0.1).to(device)
    out = {}
    with torch.inference_mode():
        spec = front.prepare(x)
        for label, plain in (("plain", True), ("cpu_loops", False)):
            with forms(plain):
                seconds = best_time(lambda: front.features(spec), 2, device)
                with torch.profiler.profile() as prof:
                    front.features(spec)
                    finish(device)
            events = prof.key_averages()
            counts = {e.key: e.count for e in events}
            out[label] = {
                "seconds": round(seconds, 4),
                "cuda_kernels": sum(e.count for e in events if e.device_type == torch.autograd.DeviceType.CUDA),
                **{op: counts.get(op, 0) for op in ("aten::mm", "aten::amax", "aten::convolution")},
            }
    return {"batch": batch, **out}


def cuda_kernels(name: str, device: torch.device, batch: int = 64, top: int = 6) -> dict:
    """Where a large front-end's network spends the GPU's time at ``batch``, per precision: its
    forward's seconds (best of 3) with cuDNN's heuristic pick of algorithms and with its
    autotuner (extraction's setting: devices.convolutions_tuned), and the autotuned forward's
    ``top`` CUDA kernels by the profiler's self time, with their share of all kernels' time."""
    release_memory()
    front = build_frontend(compose([f"frontend={name}", "feature_size=large"])).eval().to(device)
    x = (torch.randn(batch, front.input_samples) * 0.1).to(device)
    on_gpu = device.type == "cuda"  # elsewhere (a trial run on the CPU): the CPU's operators
    activity = torch.profiler.ProfilerActivity.CUDA if on_gpu else torch.profiler.ProfilerActivity.CPU
    kind = torch.autograd.DeviceType.CUDA if on_gpu else torch.autograd.DeviceType.CPU

    def self_time(event) -> float:
        return event.self_device_time_total if on_gpu else event.self_cpu_time_total

    out = {}
    with torch.inference_mode():
        spec = front.prepare(x)
        for p in ("fp32", "bf16"):
            compute = computing(front, device, p)
            row = {"heuristic_s": round(best_time(lambda: compute(spec), 3, device), 4)}
            with convolutions_tuned(device):
                row["autotuned_s"] = round(best_time(lambda: compute(spec), 3, device), 4)
                with torch.profiler.profile(activities=[activity]) as prof:
                    compute(spec)
                    finish(device)
            kernels = {e.key: (e.count, self_time(e)) for e in prof.key_averages() if e.device_type == kind}
            total = sum(t for _, t in kernels.values()) or 1.0
            row["kernels_ms"] = round(total / 1e3, 2)
            row["top_kernels"] = [
                {"kernel": key[:120], "calls": n, "share": round(t / total, 3)}
                for key, (n, t) in sorted(kernels.items(), key=lambda kv: -kv[1][1])[:top]
            ]
            out[p] = row
    return {"batch": batch, **out}


def extract_in_chunks(front, clips: list[Clip], out: np.ndarray, device: torch.device, settings: ExtractSettings,
                      shared: bool = True) -> None:  # fmt: skip
    """extract() over the chunks a run cuts ``clips`` into (chunks.layout), as a run computes them
    (run.features.Extraction): one Decoder across the chunks, each naming the next (``shared``),
    or, as before that, decoding threads of each chunk's own."""
    chunks = layout(len(clips), settings.batch_size)
    with Decoder(front, settings) as decoder:
        for chunk, after in zip(chunks, [*chunks[1:], None]):
            then = clips[after.start : after.stop] if shared and after else ()
            extract(front, clips[chunk.start : chunk.stop], out[chunk.start : chunk.stop], device, settings,
                    decoder=decoder if shared else None, then=then)  # fmt: skip


def cuda_extraction(
    name: str, clips: list[Clip], device: torch.device, batch: int, workers: int, network: dict[str, float]
) -> dict:
    """Extraction's clips/s in fp32 and bf16, in chunks as a run computes them, against decoding
    alone with the same threads and batches, and which bounds it: decoding, or the network (its
    clips/s per precision: ``network``); in bf16 also with decoding threads of each chunk's own
    (before extract.Decoder outlived a chunk)."""
    release_memory()
    front = build_frontend(compose([f"frontend={name}", "feature_size=large"])).eval()
    out = np.empty((len(clips), profile(front)["feature_dim"]), np.float32)
    settings = ExtractSettings(batch_size=batch, num_workers=workers, progress=False)
    start = time.perf_counter()
    with Decoder(front, settings) as decoder:
        for _ in decoder.batches(clips):
            pass
    row = {"decode_clips_per_s": round(len(clips) / (time.perf_counter() - start), 1), "chunks": len(layout(len(clips), batch))}
    for p, shared in (("fp32", True), ("bf16", True), ("bf16", False)):
        settings = ExtractSettings(batch_size=batch, num_workers=workers, progress=False, precision=p)
        extract(front, clips[:batch], out[:batch], device, settings)  # warm-up: this batch's shapes
        finish(device)
        start = time.perf_counter()
        extract_in_chunks(front, clips, out, device, settings, shared)
        rate = round(len(clips) / (time.perf_counter() - start), 1)
        if not shared:
            row[f"{p}_threads_per_chunk_clips_per_s"] = rate
            continue
        row[f"{p}_clips_per_s"] = rate
        row[f"{p}_ratio"] = round(rate / row["decode_clips_per_s"], 2)
        row[f"{p}_network_clips_per_s"] = network[p]
        row[f"{p}_bound"] = "decoding" if row["decode_clips_per_s"] <= network[p] else "network"
    return row


def cuda_main(json_path: str) -> None:
    """--device cuda: the GPU's table (see CUDA_NOTES), written to ``json_path`` as each part is
    measured (a run cut short keeps what it had)."""
    device = torch.device("cuda")
    strict_fp32()
    props = torch.cuda.get_device_properties(device)
    result: dict = {
        "machine": {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "cpu": cpu_model(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()},  # fmt: skip
        **cuda_limits(device),
        "notes": CUDA_NOTES,
    }
    print(f"{props.name}: strict fp32 limit {result['fp32_limit_gflops'] / 1e3:.1f} TFLOP/s (matmul, TF32 off), "
          f"bf16 limit {result['bf16_limit_gflops'] / 1e3:.1f} TFLOP/s")  # fmt: skip

    def save() -> None:
        Path(json_path).write_text(json.dumps(result, indent=1))

    result["vgg_kernels"] = k = vgg_kernels(device)
    print(f"vgg large forward, batch {k['batch']}: plain forms {k['plain']}; the CPU's loops {k['cpu_loops']}")
    save()
    result["frontends"] = {}
    for name in REQUIRED:
        with convolutions_tuned(device):  # as extraction computes
            r = result["frontends"][name] = network_rates(name, batch=64, rounds=3, limits=result, device=device)
        print(f"  {name:18s} fp32 {r['gflops'] / 1e3:.1f} TFLOP/s {r['gflops_spread']} = {r['ratio']:.2f} of the limit; "
              f"bf16 {r['bf16_gflops'] / 1e3:.1f} TFLOP/s = {r['bf16_ratio']:.2f}, {r['bf16_speedup']:.2f}x fp32")  # fmt: skip
        save()

    result["kernels"] = {}
    for name in REQUIRED:
        k = result["kernels"][name] = cuda_kernels(name, device)
        for p in ("fp32", "bf16"):
            print(f"  {name} {p}: forward {k[p]['heuristic_s']} s with cuDNN's heuristic, {k[p]['autotuned_s']} s "
                  f"autotuned; top kernels: " + "; ".join(f"{t['share']:.0%} {t['kernel'][:60]}" for t in k[p]["top_kernels"][:3]))  # fmt: skip
        save()

    result["correctness"] = {}
    for name in native_frontends():
        with convolutions_tuned(device):
            result["correctness"][name] = {size: cuda_correctness(name, size, device) for size in ("small", "large")}
        save()
    print("\ncorrectness, max relative error of CUDA's features against the CPU's (fp32 TF32 off; bf16):")
    for name, sizes in result["correctness"].items():
        print(f"  {name:18s} " + "; ".join(f"{size} {e['fp32']:.1e}, {e['bf16']:.1e}" for size, e in sizes.items()))

    # a decoding thread per CPU this process may use (at most 16), each decoding a batch of 16
    # clips: 1,024 clips are 4 batches a thread, the first decoded before anything is computed
    workers, batch = num_workers(), 16
    result["extraction"] = {"num_workers": workers, "batch_size": batch}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_folder(Path(tmp), 32, kinds=("wav",))  # decoded over and over: as many clips
        clips = [Clip(f"clip{i}", files[i % len(files)].path, "") for i in range(1024)]
        result["extraction"]["clips"] = len(clips)
        for name in REQUIRED:
            r = result["frontends"][name]
            network = {"fp32": r["clips_per_s"], "bf16": r["bf16_clips_per_s"]}
            result["extraction"][name] = cuda_extraction(name, clips, device, batch, workers, network)
            print(f"  extraction {name}: {result['extraction'][name]}")
            save()

    print(f"\n| large front-end, network only, batch 64 | fp32 (TF32 off) / fp32 limit | bf16 / bf16 limit | bf16 vs fp32 "
          f"| extraction clips/s fp32 / bf16 | decoding alone ({workers} threads, batch {batch}) | bound fp32 / bf16 |")
    print("|---|---|---|---|---|---|---|")
    for name in REQUIRED:
        r, e = result["frontends"][name], result["extraction"][name]
        print(f"| {name} | {r['ratio']:.2f} ({r['gflops'] / 1e3:.1f} TFLOP/s) | {r['bf16_ratio']:.2f} "
              f"({r['bf16_gflops'] / 1e3:.1f} TFLOP/s) | {r['bf16_speedup']:.2f}x | {e['fp32_clips_per_s']} / "
              f"{e['bf16_clips_per_s']} ({e['fp32_ratio']:.2f} / {e['bf16_ratio']:.2f} of decoding) | "
              f"{e['decode_clips_per_s']} | {e['fp32_bound']} / {e['bf16_bound']} |")  # fmt: skip

    print(f"wrote {json_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="four front-ends, fewer clips: a few minutes")
    parser.add_argument("--folder", help="a folder of recordings (one sub-folder per class) for the bf16 check")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: the GPU's table instead")
    args = parser.parse_args()
    kept = keep_freed_memory()  # as the commands do (devices.keep_freed_memory)
    if args.device == "cuda":
        cuda_main(args.json)
        return
    names = REQUIRED if args.quick else tuple(n for n in native_frontends() if n != "mfcc")
    result = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "processor": platform.processor() or platform.machine(), "cpu": cpu_model(),
                    "classifier_product": "oneDNN" if mkl_runs_avx2_only() else "torch.matmul",
                    "malloc_keeps_freed_memory": kept},  # fmt: skip
        "cpu_features": cpu_matrix_features(),
        "bf16_computes_in": effective_precision(torch.device("cpu"), "bf16"),
        **limits(),
        "notes": NOTES,
    }
    print(f"fp32 limit {result['fp32_limit_gflops']} GFLOP/s (torch.matmul {result['gemm_gflops']}, oneDNN "
          f"{result['onednn_gemm_gflops']}); bf16 limit {result['bf16_limit_gflops']} GFLOP/s (matmul "
          f"{result['bf16_gemm_gflops']}, channels-last conv {result['bf16_conv_gflops']}) on "
          f"{result['machine']['torch_threads']} threads; CPU features {result['cpu_features']}")  # fmt: skip
    result["frontends"], result["training"] = {}, {}
    for name in names:
        row = network_rates(name, batch=2, rounds=3 if args.quick else 5, limits=result)
        result["frontends"][name] = row
        print(f"  {name:18s} {row['gflops_per_clip']:7.1f} GFLOP/clip fp32 {row['gflops']:7.1f} GFLOP/s "
              f"{row['gflops_spread']} = {row['ratio']:.2f} of the fp32 limit; bf16 {row['bf16_gflops']:7.1f} GFLOP/s "
              f"{row['bf16_gflops_spread']} = {row['bf16_ratio']:.2f} of the bf16 limit, {row['bf16_speedup']:.2f}x fp32, "
              f"features {row['bf16_relative_difference']:.1e} apart")  # fmt: skip
    for name in REQUIRED:
        train = training_rates(name, batch=2, steps=2 if args.quick else 4, limits=result)
        result["training"][name] = train
        print(f"  training {name:18s} " + "; ".join(
            f"{p} {t['steps_per_s']} steps/s (batch 2) {t['gflops']} GFLOP/s {t['gflops_spread']} = {t['ratio']:.2f} of the {p} limit"
            for p, t in train.items()))  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        # enough clips that the pipeline's start (the first batch decoded before any compute) is
        # a small part, as in a real dataset of thousands
        clips = write_folder(Path(tmp), 6 if args.quick else 24)
        e2e = end_to_end("vgg", clips, batch=2, rounds=2 if args.quick else 4)
        result["end_to_end"] = e2e
        result["peak_rss_mb"] = e2e["peak_rss_mb"]
        small = ("mfcc", *REQUIRED) if args.quick else native_frontends()
        result["small_frontends"] = small_frontends(small, write_folder(Path(tmp) / "small", 32 if args.quick else 64))
    print(f"end to end (vgg large, WAV + MP3, decoding included): {e2e['clips_per_s']} clips/s = "
          f"{e2e['ratio']:.2f} x the same clips decoded beforehand ({e2e['network_clips_per_s']}; rounds {e2e['round_ratios']}); "
          f"steady {e2e['steady_ratio']:.3f}, start {e2e['start_s']} s; peak RSS {e2e['peak_rss_mb']} MB "
          f"(first half {e2e['peak_rss_first_half_mb']} MB, second half {e2e['peak_rss_second_half_mb']} MB)")  # fmt: skip

    for name, row in result["small_frontends"].items():
        print(f"  small {name:18s} extraction {row['clips_per_s']} clips/s ({row['decoding_threads']} decoding threads); "
              f"decoding alone {row['decode_clips_per_s']} (one thread), network alone {row['network_clips_per_s']}; "
              f"bound by {row['bound']} ({row['ceilings_clips_per_s'][row['bound']]}): extraction = "
              f"{row['of_decoding']:.2f} of one thread's decoding, {row['of_bound']:.2f} of the bound")  # fmt: skip

    result["classifiers"] = classifiers()
    c = result["classifiers"]
    print(f"SVM {c['shape']}: ours {c['svm_ours']} libsvm {c['svm_libsvm']} -> {c['svm_speedup']}x")
    print(f"ELM 2500 units: ours {c['elm_ours']} pinv float64 {c['elm_pinv_float64']} -> {c['elm_speedup']}x")

    checks = [["dataset=synth", "frontend=timbral_temporal", "feature_size=large"]]
    if args.quick:
        checks = [["dataset=synth", "frontend=timbral_temporal", "feature_size=large", "dataset.clips_per_class=15"]]
    result["precision"] = [precision_accuracy(c, "synth") for c in checks]
    if args.folder:
        result["precision"].append(
            precision_accuracy(["dataset=folder", f"dataset.root={args.folder}", "dataset.n_folds=5",
                                "frontend=timbral_temporal", "feature_size=large"], args.folder)  # fmt: skip
        )
    for p in result["precision"]:
        print(f"bf16 on {p['data']} ({p['frontend']} {p['feature_size']}): {p['speedup']}x faster extraction, "
              f"test accuracy {p['fp32']['test_accuracy']} -> {p['bf16']['test_accuracy']}, features "
              f"{p['features_relative_difference']:.1e} apart")  # fmt: skip
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
