"""Front-ends computed elsewhere: any HEAR 2021 module (``frontend=hear``), or vectors a user
computed with another tool (``frontend=embeddings``). Their rows go through the same cache,
protocols, classifiers, statistics and report as elm_audio's own front-ends.

A HEAR module gets each clip whole, decoded and resampled (soxr) to the module's
``sample_rate``: the sound the module would see in HEAR, not the run's fitted input (clips of
one length are computed together; the module decides what to do with a clip's length, as it
does in HEAR). Its scene embedding is the clip's row.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.metadata
import math
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import ConfigError
from ..datasets.index import Clip
from .base import WAVEFORM_SAMPLES, FrontEnd

# The duration a HEAR module's cost is measured on (the method's waveform input, 29.2 s).
REFERENCE_SECONDS = WAVEFORM_SAMPLES / 12_000


class Imported(FrontEnd):
    """What elm_audio's own front-ends have and imported ones do not: weights drawn from the
    run's seed (the seed still seeds the classifier), a meta-device trace of their layers."""

    input_kind = "waveform"
    fits_input = False

    def init_weights(self, seed: int) -> "Imported":
        return self.requires_grad_(False)

    def profile(self) -> dict[str, Any]:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What the cache key needs besides the config: the code's version, the files' digests."""
        raise NotImplementedError


@cache
def sha256_of(path: str, size: int, mtime: float) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_digest(path: str | Path) -> str:
    stat = Path(path).stat()
    return sha256_of(str(path), stat.st_size, stat.st_mtime)


@cache
def package_version(module_name: str, module: Any) -> str:
    """The version of the distribution that ships the module (or its ``__version__``); looked
    up once a process (listing the installed distributions takes a while)."""
    top = module_name.split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return str(getattr(module, "__version__", getattr(importlib.import_module(top), "__version__", "unknown")))


class HearModule(Imported):
    """A HEAR module's scene embeddings as a front-end: ``load_model(model_file, **options)``."""

    def __init__(self, module: str, model_file: str = "", options: Mapping[str, Any] | None = None):
        super().__init__()
        if not module:
            raise ConfigError("frontend=hear needs frontend.module=<importable name>, e.g. frontend.module=hearbaseline")
        try:
            self.hear = importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"frontend.module={module}: cannot be imported ({err}); install it or fix the name") from None
        missing = [f for f in ("load_model", "get_scene_embeddings") if not hasattr(self.hear, f)]
        if missing:
            raise ConfigError(f"frontend.module={module} is not a HEAR module: it has no {', '.join(missing)}")
        if model_file and not Path(model_file).is_file():
            raise ConfigError(f"frontend.model_file={model_file}: no such file")
        self.module_name = module
        self.model_file = str(model_file or "")
        self.options = dict(options or {})
        args = (self.model_file,) if self.model_file else ()
        model = self.hear.load_model(*args, **self.options)
        if isinstance(model, nn.Module):
            self.model = model.eval()  # a submodule: moves with the front-end to the run's device
        else:
            self.__dict__["model"] = model  # kept out of torch's module tree
        for attribute in ("sample_rate", "scene_embedding_size"):
            if not isinstance(getattr(model, attribute, None), int):
                raise ConfigError(f"frontend.module={module}: its model has no integer {attribute} attribute")
        self.sample_rate = int(model.sample_rate)
        self.feature_dim = int(model.scene_embedding_size)

    @property
    def input_samples(self) -> int:
        """The reference clip length (audio.min_fraction of it is the shortest usable clip)."""
        return round(REFERENCE_SECONDS * self.sample_rate)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.input_samples,)

    def prepare(self, waveform: torch.Tensor, stft_padding: str = "zeros") -> torch.Tensor:
        return waveform

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.hear.get_scene_embeddings(x, self.model)
        return (out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))).float()

    def profile(self) -> dict[str, Any]:
        """Parameters and GFLOP of one 29.2 s clip where the model is a torch module (FLOPs
        counted on torch's meta device; NaN where the module cannot run there)."""
        torch_model = isinstance(self.model, nn.Module)
        gflops = math.nan
        if torch_model:
            try:
                meta = copy.deepcopy(self.model).to("meta")
                with FlopCounterMode(display=False) as counter:
                    self.hear.get_scene_embeddings(torch.zeros(1, self.input_samples, device="meta"), meta)
                gflops = counter.get_total_flops() / 1e9
            except Exception:  # a module that computes in numpy, or checks its input's values
                pass
        return {
            "input": "imported",
            "input_shape": [self.input_samples],
            "feature_dim": self.feature_dim,
            "n_params": sum(p.numel() for p in self.model.parameters()) if torch_model else None,
            "gflops_per_clip": gflops,
            "layers": [],
        }

    def identity(self) -> dict[str, Any]:
        return {
            "hear_module": self.module_name,
            "hear_version": package_version(self.module_name, self.hear),
            "model_file_sha256": file_digest(self.model_file) if self.model_file else "",
        }


class Embeddings(Imported):
    """Vectors computed elsewhere, one per clip id: ``path`` is an .npz holding ``clip_ids`` and
    ``embeddings`` (or ``features``, as a run's features.npz artifact has), or a folder of
    ``<clip id>.npy`` files (the dataset's layout below its root, .npy for the extension)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = Path(str(path)).expanduser()
        if not str(path) or not self.path.exists():
            raise ConfigError(f"frontend.path={path}: no such file or folder; give an .npz of clip_ids and embeddings, or a folder of <clip id>.npy")
        self.vectors = self._read()
        widths = {v.shape[0] for v in self.vectors.values()}
        if len(widths) != 1:
            common = max(widths, key=lambda w: sum(v.shape[0] == w for v in self.vectors.values()))
            odd = next(cid for cid, v in sorted(self.vectors.items()) if v.shape[0] != common)
            raise ConfigError(
                f"frontend.path={self.path}: vectors of different widths ({', '.join(map(str, sorted(widths)))}); "
                f"e.g. {odd} has {self.vectors[odd].shape[0]} values where most have {common}"
            )
        self.feature_dim = widths.pop()

    def _read(self) -> dict[str, np.ndarray]:
        if self.path.is_dir():
            files = sorted(self.path.rglob("*.npy"))
            if not files:
                raise ConfigError(f"frontend.path={self.path}: the folder holds no .npy files")
            found = {}
            for f in files:
                vector = np.load(f)
                if vector.ndim == 2 and vector.shape[0] == 1:
                    vector = vector[0]
                if vector.ndim != 1:
                    raise ConfigError(f"frontend.path: {f} holds an array of shape {vector.shape}; one vector per clip is needed")
                found[f.relative_to(self.path).with_suffix("").as_posix()] = vector
            return self._checked(found)
        try:
            table = np.load(self.path)
            ids, matrix = table["clip_ids"], table["embeddings"] if "embeddings" in table else table["features"]
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"frontend.path={self.path}: not an .npz with clip_ids and embeddings ({err})") from None
        if matrix.ndim != 2 or len(matrix) != len(ids):
            raise ConfigError(f"frontend.path={self.path}: embeddings are {matrix.shape} for {len(ids)} clip ids; one row per clip id is needed")
        return self._checked({str(i): row for i, row in zip(ids, matrix)})

    def _checked(self, vectors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        broken = [cid for cid, v in vectors.items() if not np.isfinite(v).all()]
        if broken:
            raise ConfigError(f"frontend.path={self.path}: {len(broken)} vector(s) hold NaN or infinity, e.g. {broken[0]}")
        return {cid: v.astype(np.float32) for cid, v in vectors.items()}

    def check_clips(self, clips: Sequence[Clip]) -> None:
        """Every clip of the dataset needs a vector; extra vectors are ignored."""
        missing = [c.clip_id for c in clips if c.clip_id not in self.vectors]
        if missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise ConfigError(f"frontend.path={self.path}: no vector for {len(missing)} of {len(clips)} clip(s): {shown}")

    def rows(self, clips: Sequence[Clip]) -> np.ndarray:
        return np.stack([self.vectors[c.clip_id] for c in clips])

    def profile(self) -> dict[str, Any]:
        return {"input": "imported", "input_shape": [], "feature_dim": self.feature_dim, "n_params": None,
                "gflops_per_clip": math.nan, "layers": []}  # fmt: skip

    def identity(self) -> dict[str, Any]:
        if self.path.is_file():
            listing = f"{self.path.name} {file_digest(self.path)}"
        else:
            listing = "\n".join(f"{f.relative_to(self.path).as_posix()} {file_digest(f)}" for f in sorted(self.path.rglob("*.npy")))
        return {"embeddings_sha256": hashlib.sha256(listing.encode()).hexdigest()}
