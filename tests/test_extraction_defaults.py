"""extract.batch_size=auto and extract.num_workers=auto: chosen for the device once, by
settings.load (extraction/defaults.py); an int given is kept; anything else is refused."""

from __future__ import annotations

import types

import pytest
import torch

from elm_audio.config import ConfigError, build, compose
from elm_audio.extraction import defaults
from elm_audio.extraction.chunks import CHUNK_CLIPS
from elm_audio.extraction.defaults import (
    AUTO,
    CPU_BATCH,
    LARGEST_BATCH,
    MOST_WORKERS,
    clip_bytes,
    cuda_batch_size,
    decoding_workers,
)
from elm_audio.settings.settings import load

GB = 1e9


def settings_for(tmp_path, *overrides: str):
    return load(compose(["device=cpu", f"cache.dir={tmp_path}", *overrides]))


def on_meta(frontend: str, size: str) -> torch.nn.Module:
    with torch.device("meta"):
        return build(
            compose([f"frontend={frontend}", f"feature_size={size}"]).frontend.net
        )


def power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def test_the_config_s_defaults_are_auto():
    cfg = compose([])
    assert (cfg.extract.batch_size, cfg.extract.num_workers) == (AUTO, AUTO)


@pytest.mark.parametrize("cores", [1, 2, 6, 64])
def test_auto_on_the_cpu_is_a_batch_of_8_and_a_decoding_thread_per_core(tmp_path, monkeypatch, cores):
    """The cores the process may use (its affinity: SLURM's cpus_per_task), at most 16 threads."""
    monkeypatch.setattr(defaults, "usable_cores", lambda: cores)
    settings = settings_for(tmp_path)
    threads = min(cores, MOST_WORKERS)
    assert (settings.extraction.batch_size, settings.extraction.num_workers) == (8, threads)
    assert CPU_BATCH == 8
    # what the run's params and config.yaml record: the values used, not "auto"
    extract = settings.config["extract"]
    assert (extract["batch_size"], extract["num_workers"]) == (8, threads)


def test_ints_given_pass_through(tmp_path):
    settings = settings_for(tmp_path, "extract.batch_size=3", "extract.num_workers=0")
    assert (settings.extraction.batch_size, settings.extraction.num_workers) == (3, 0)
    assert settings.config["extract"]["batch_size"] == 3


def test_ints_given_pass_through_on_cuda_without_asking_the_gpu():
    def no_frontend():
        raise AssertionError("an int given needs no estimate")

    assert defaults.resolve(5, 2, torch.device("cuda"), "fp32", no_frontend) == (5, 2)


WRONG = ["big", "0", "-1", "Auto", "1.5", "true"]


# 0 decoding threads is allowed: decode between batches
BAD = [("extract.batch_size", w) for w in WRONG]
BAD += [("extract.num_workers", w) for w in WRONG if w != "0"]


@pytest.mark.parametrize("key,wrong", BAD)
def test_a_bad_value_is_one_line_naming_the_key_and_what_to_write(tmp_path, key, wrong):
    with pytest.raises(ConfigError) as refused:
        settings_for(tmp_path, f"{key}={wrong}")
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{key}={wrong}")
    assert "or auto" in message or "must be auto" in message  # what to write instead
    assert ("at least" if wrong in ("0", "-1") else "a whole number") in message


def test_the_cuda_batch_is_a_power_of_two_from_1_to_64():
    for total in (0, 1e6, 4 * GB, 16 * GB, 80 * GB, 141 * GB, 1e15):
        for per_clip in (0, 1, 1e6, 50e6, 500e6, 5 * GB, 1e15):
            for weights in (0, 100e6, 50 * GB):
                batch = cuda_batch_size(total, per_clip, weights)
                assert power_of_two(batch) and 1 <= batch <= LARGEST_BATCH
                wide = cuda_batch_size(total, per_clip, weights, most=64)
                assert power_of_two(wide) and 1 <= wide <= 64


def test_a_larger_front_end_or_a_smaller_gpu_gets_a_smaller_batch():
    # given numbers: 16 GB and 80 GB GPUs; 50 MB and 500 MB a clip; the cap lifted to 64
    small, large = 50e6, 500e6
    assert cuda_batch_size(16 * GB, large, most=64) < cuda_batch_size(
        16 * GB, small, most=64
    )
    assert cuda_batch_size(16 * GB, large, most=64) < cuda_batch_size(
        80 * GB, large, most=64
    )
    # the rule: the largest power of two whose safety x (weights + batch x clip) fits the share
    batch = cuda_batch_size(16 * GB, large, 100e6, share=0.25, safety=2.0, most=64)
    assert (
        2.0 * (100e6 + batch * large)
        <= 0.25 * 16 * GB
        < 2.0 * (100e6 + 2 * batch * large)
    )
    assert cuda_batch_size(1 * GB, 5 * GB) == 1  # never below one clip
    assert cuda_batch_size(1e15, 1.0, most=64) == 64  # never above 64


def test_the_batch_never_starves_the_decoding_threads_of_a_chunk():
    """A chunk is one extraction whose batches are decoded one per thread: at most 256 clips /
    16 threads = 16 clips a batch, however much the GPU holds."""
    assert cuda_batch_size(141 * GB, 1e6) == CHUNK_CLIPS // MOST_WORKERS == 16


def test_the_estimate_comes_from_the_front_end_s_architecture():
    vgg_large, vgg_small = on_meta("vgg", "large"), on_meta("vgg", "small")
    fp32, weights = clip_bytes(vgg_large, "fp32")
    # at least vgg large's first map (717 channels of 1,376 x 96 float32) is held at once
    assert fp32 >= 717 * 1376 * 96 * 4
    assert weights >= 4 * sum(
        p.numel() for p in vgg_large.parameters()
    )  # and the buffers
    assert fp32 < 4 * 717 * 1376 * 96 * 4  # and not every map at once
    bf16, _ = clip_bytes(vgg_large, "bf16")
    assert (
        0.4 * fp32 < bf16 < 0.6 * fp32
    )  # the maps at half the width; the float64 log-mel not
    assert clip_bytes(vgg_small, "fp32")[0] < fp32
    cuda = torch.device("cuda")
    large = defaults.batch_size(cuda, "fp32", vgg_large, total_memory=16 * GB)
    assert large < defaults.batch_size(cuda, "fp32", vgg_small, total_memory=16 * GB)
    assert large < defaults.batch_size(cuda, "fp32", vgg_large, total_memory=141 * GB)
    assert large <= defaults.batch_size(cuda, "bf16", vgg_large, total_memory=16 * GB)


@pytest.mark.parametrize(
    "name", ["sample_level", "timbral_temporal", "mfcc", "frame_level"]
)
def test_every_kind_of_front_end_is_estimated(name):
    per_clip, _ = clip_bytes(on_meta(name, "large"), "fp32")
    assert per_clip > 350_000 * 4  # its input at least


def test_an_imported_front_end_keeps_the_cpu_s_batch():
    assert (
        defaults.batch_size(torch.device("cuda"), "fp32", None, total_memory=141 * GB)
        == CPU_BATCH
    )


def test_decoding_threads_follow_the_cores_up_to_16():
    assert [decoding_workers(n) for n in (0, 1, 2, 15, 16, 17, 192)] == [
        1,
        1,
        2,
        15,
        16,
        16,
        16,
    ]
    assert defaults.num_workers(cores=4) == 4
    assert defaults.num_workers(cores=64) == MOST_WORKERS
    assert 1 <= defaults.usable_cores()


def test_auto_on_cuda_chooses_by_the_gpu_s_total_memory_and_says_so(
    monkeypatch, capsys
):
    """resolve's CUDA path on any machine: the GPU's name and total memory as a 16 GB one's."""
    gpu = types.SimpleNamespace(name="Test GPU", total_memory=16 * GB)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: gpu)
    monkeypatch.setattr(defaults, "usable_cores", lambda: 6)
    cuda, vgg_large = torch.device("cuda"), on_meta("vgg", "large")
    chosen = defaults.resolve(AUTO, AUTO, cuda, "fp32", lambda: vgg_large)
    expected = cuda_batch_size(16 * GB, *clip_bytes(vgg_large, "fp32"))
    assert chosen == (expected, 6) and expected < 16
    line = capsys.readouterr().err.strip()
    assert line == (
        f"elm_audio: extraction on Test GPU (16 GB): batches of {expected} clip(s), 6 decoding "
        "thread(s) (extract.batch_size=auto, extract.num_workers=auto)"
    )
    assert defaults.resolve(AUTO, 3, cuda, "fp32", lambda: vgg_large) == (expected, 3)
    assert defaults.resolve(AUTO, AUTO, cuda, "fp32", lambda: None) == (
        CPU_BATCH,
        6,
    )  # imported


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU: load(device=cuda) asks it"
)
def test_load_on_cuda_gives_ints_in_range(tmp_path):
    settings = load(
        compose(
            [
                "device=cuda",
                f"cache.dir={tmp_path}",
                "frontend=vgg",
                "feature_size=large",
            ]
        )
    )
    batch, workers = settings.extraction.batch_size, settings.extraction.num_workers
    assert (
        isinstance(batch, int) and power_of_two(batch) and 1 <= batch <= LARGEST_BATCH
    )
    assert isinstance(workers, int) and 1 <= workers <= MOST_WORKERS
    assert settings.config["extract"] == {
        **settings.config["extract"],
        "batch_size": batch,
        "num_workers": workers,
    }
