"""Front-ends as a test builds them, docs/method.md's table of their feature lengths, and where the
original code's outputs are kept (the golden tests)."""

from __future__ import annotations

from pathlib import Path

from elm_audio.config import compose
from elm_audio.settings.components import build_frontend

# docs/method.md, "Front-ends": the feature-vector lengths, small and large.
LENGTHS = {
    "sample_level": (161, 3584),
    "frame_level": (160, 3584),
    "frame_level_many": (160, 3584),
    "vgg": (160, 3585),
    "cnn_7x96": (160, 3585),
    "cnn_7x86": (160, 3585),
    "timbral": (112, 3584),
    "temporal": (112, 3584),
    "timbral_temporal": (112, 3584),
    "timbral_time": (112, 3584),
    "mfcc": (120, 120),
}
# the repository's sibling folder shared/ (tests/helpers/frontends.py: three levels below it)
SHARED = Path(__file__).resolve().parents[3] / "shared"
GOLDEN = SHARED / "golden" / "elmarc"


def frontend(name: str, size: str = "small", seed: int = 0, *overrides: str):
    return build_frontend(compose([f"frontend={name}", f"feature_size={size}", f"seed={seed}", *overrides]))
