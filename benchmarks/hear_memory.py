"""Peak memory and time of elm_audio.hear on one long sound (docs/interop.md):
``python benchmarks/hear_memory.py [--frontend temporal] [--minutes 20]``, large feature size."""

from __future__ import annotations

import argparse
import resource
import time

import torch

import elm_audio.hear as hear


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frontend", default="temporal")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args()
    model = hear.load_model(frontend=args.frontend, feature_size="large", sample_rate=args.sample_rate)
    audio = torch.rand(1, int(args.minutes * 60 * args.sample_rate)) * 2 - 1
    print(f"{args.frontend} large, {args.minutes:g} min at {args.sample_rate} Hz: audio {audio.numel() * 4 / 2**20:.0f} MB, "
          f"loaded {peak_mb():.0f} MB")  # fmt: skip
    start = time.perf_counter()
    hear.get_scene_embeddings(audio, model)
    print(f"scene embedding: {time.perf_counter() - start:.1f} s, peak {peak_mb():.0f} MB")
    start = time.perf_counter()
    embeddings, _ = hear.get_timestamp_embeddings(audio, model)
    print(f"timestamp embeddings {tuple(embeddings.shape)} ({embeddings.numel() * 4 / 2**20:.0f} MB): "
          f"{time.perf_counter() - start:.1f} s, peak {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()
