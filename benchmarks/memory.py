"""Peak memory of each large front-end on one 29 s clip (batch size 1), each in a fresh process.

    python benchmarks/memory.py [--json out.json]

Prints one line per front-end: peak resident memory in MB of a process that builds the
front-end and extracts one clip's features, and the same process idle (imports and weights only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = """
import resource, sys, torch
from elm_audio.config import compose
from elm_audio.settings.components import build_frontend
front = build_frontend(compose(["frontend=" + sys.argv[1], "feature_size=large"])).eval()
idle = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
with torch.inference_mode():
    front(torch.randn(1, front.input_samples) * 0.1)
print(idle, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def measure(name: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, name], capture_output=True, text=True, check=True)
    idle, peak = map(float, out.stdout.split())
    return {"frontend": name, "idle_rss_mb": round(idle), "peak_rss_mb": round(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    from elm_audio.config import native_frontends

    rows = [measure(name) for name in native_frontends()]
    for row in rows:
        print(f"{row['frontend']:18s} peak {row['peak_rss_mb']:6.0f} MB   (idle {row['idle_rss_mb']:.0f} MB)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
