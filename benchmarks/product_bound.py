"""What the product library allows a front-end's layer shapes on this machine: the rate its
network would reach if every layer ran as fast as a bare product of its shape, with nothing
else (no maximum over frequency offsets, no pooling, no copies), against the rate it reaches.

    python benchmarks/product_bound.py [--frontends timbral_temporal vgg ...] [--json out.json]

Each convolution and product of the front-end's plain forms (profile's trace, FlopCount.products)
is the 2-D product it amounts to: rows (its output positions, at batch 2), inner dimension (a
filter's values), outputs (its filters). Each (inner, outputs) is timed alone through F.linear on
as many rows as give about SHAPE_BYTES of output, the cache-sized chunks the front-ends compute
in (float32: also through oneDNN, the faster taken; bf16 and fp16: the filters in
products.product_weight's layout), the median of REPS calls. The bound is the forward's FLOPs over
the sum of each shape's rows at its rate. A small inner dimension (timbral_temporal's 1 x 38
filters: 38) keeps a product, and so the layer, well below the machine's limit, whatever the
code around it; the network's own rate (median of REPS forwards) shows what that code costs.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import torch
import torch.nn.functional as F

from elm_audio.config import compose
from elm_audio.devices import keep_freed_memory
from elm_audio.extraction.precision import cpu_has_bf16_units, network_features
from elm_audio.frontends.profile import FlopCount
from elm_audio.products import onednn_linear, product_weight
from elm_audio.settings.components import build_frontend

BATCH = 2
SHAPE_BYTES = 2 << 20
REPS = 21


def median_time(fn, reps: int = REPS) -> float:
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def shapes(front: torch.nn.Module) -> tuple[collections.Counter, int]:
    """The rows at BATCH of each (inner, outputs) product the front-end's layers amount to, and
    its forward's FLOPs at BATCH."""
    with torch.no_grad(), FlopCount() as counter:
        front.trace(torch.zeros((front.profile_clips, *front.input_shape)))
    rows: collections.Counter = collections.Counter()
    for n, inner, outputs in counter.products:
        rows[(inner, outputs)] += n * BATCH
    return rows, counter.total * BATCH


def product_rate(inner: int, outputs: int, rows: int, dtype: torch.dtype, reps: int) -> float:
    """GFLOP/s of a bare product of ``rows`` x ``inner`` by ``inner`` x ``outputs`` in ``dtype``,
    on at most a cache-sized chunk of the rows."""
    m = max(64, min(rows, SHAPE_BYTES // (outputs * torch.empty((), dtype=dtype).element_size())))
    x, weight = torch.randn(m, inner).to(dtype), product_weight(torch.randn(outputs, inner).to(dtype))
    with torch.inference_mode():
        seconds = median_time(lambda: F.linear(x, weight), reps)
        if dtype == torch.float32:
            seconds = min(seconds, median_time(lambda: onednn_linear(x, weight), reps))
    return 2 * m * inner * outputs / seconds / 1e9


def measure(name: str, size: str = "large", reps: int = REPS) -> dict:
    front = build_frontend(compose([f"frontend={name}", f"feature_size={size}"])).eval()
    rows, flops = shapes(front)
    x = torch.randn(BATCH, front.input_samples) * 0.1
    row: dict = {"frontend": name, "size": size, "gflops_per_batch": round(flops / 1e9, 3)}
    precisions = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if cpu_has_bf16_units() else {})}
    with torch.inference_mode():
        spec = front.prepare(x)
    for precision, dtype in precisions.items():
        seconds = sum(n / (product_rate(inner, outputs, n, dtype, reps) * 1e9) * 2 * inner * outputs
                      for (inner, outputs), n in rows.items())  # fmt: skip
        compute = network_features(front, torch.device("cpu"), precision)
        with torch.inference_mode():
            network = median_time(lambda: compute(spec), max(3, reps // 4))
        row[precision] = {
            "products_gflops": round(flops / seconds / 1e9, 1),
            "network_gflops": round(flops / network / 1e9, 1),
            "of_products": round(seconds / network, 2),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frontends", nargs="+", default=["vgg", "cnn_7x86", "sample_level", "timbral_temporal"])
    parser.add_argument("--size", default="large", choices=("small", "large"))
    parser.add_argument("--reps", type=int, default=REPS, help="calls timed per product (the median is kept)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    keep_freed_memory()  # as the commands do
    rows = []
    for name in args.frontends:
        row = measure(name, args.size, args.reps)
        rows.append(row)
        print(f"{name:18s} " + "; ".join(
            f"{p}: bare products of its shapes {r['products_gflops']:.1f} GFLOP/s, the network {r['network_gflops']:.1f} "
            f"({r['of_products']:.2f} of them)" for p, r in row.items() if isinstance(r, dict)))  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch_threads": torch.get_num_threads(), "frontends": rows}, f, indent=1)


if __name__ == "__main__":
    main()
