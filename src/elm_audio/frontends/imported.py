"""Front-ends computed elsewhere: any HEAR 2021 module (``frontend=hear``), or vectors a user
computed with another tool (``frontend=embeddings``). Their rows go through the same cache,
protocols, classifiers, statistics and report as elm_audio's own front-ends.

A HEAR module gets each clip whole, decoded and resampled (soxr) to the module's
``sample_rate``: the sound the module would see in HEAR, not the run's fitted input (clips of
one length are computed together; the module decides what to do with a clip's length, as it
does in HEAR). Its scene embedding is the clip's row.

What comes in is checked before it becomes features: a module's embeddings must be one row of
``scene_embedding_size`` finite floats per clip, a file must be a regular file (a FIFO would
block the run) of real numbers, one vector per clip id. Anything else is a ConfigError naming
the module or file, which the command line prints as one line; no cache entry is written.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.metadata
import math
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..config import ConfigError
from ..datasets.index import Clip
from ..stores import shared_files
from ..stores.shared_files import NotARegularFile
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


def open_regular(path: str | Path, key: str) -> BinaryIO:
    """``path`` opened for reading if it is a regular file (links followed: a user's own files);
    a ConfigError naming ``key`` (the config key that gave it) and the path otherwise, at once
    for a FIFO (see shared_files.open_regular)."""
    try:
        return shared_files.open_regular(Path(path), follow_links=True)
    except NotARegularFile as err:
        kind = str(err).split(" is ", 1)[-1]
        raise ConfigError(f"{key}: {path} is {kind}; give a regular file") from None
    except OSError as err:
        raise ConfigError(f"{key}: {path} cannot be opened ({err.strerror}); check the path and its permissions") from None


@cache
def sha256_of(path: str, size: int, mtime: float, key: str) -> str:
    with open_regular(path, key) as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_digest(path: str | Path, key: str) -> str:
    """The file's SHA-256, computed once a process for each size and modification time."""
    status = Path(path).stat()
    return sha256_of(str(path), status.st_size, status.st_mtime, key)


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
        """The module's scene embeddings of the batch, checked: a row per clip of
        ``scene_embedding_size`` finite floats. Anything else would be broadcast into the
        feature matrix unnoticed ((clips, 1), (1, clips, d)) or fail deep in numpy."""
        out = self.hear.get_scene_embeddings(x, self.model)
        said = f"frontend.module={self.module_name}: get_scene_embeddings returned"
        fault = not_floats(out)
        if fault:
            raise ConfigError(f"{said} {fault}; a HEAR module returns a float tensor of (clips, scene_embedding_size)")
        rows = out if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out, dtype=np.float32))
        expected = (len(x), self.feature_dim)
        if tuple(rows.shape) != expected:
            raise ConfigError(
                f"{said} shape {tuple(rows.shape)} for {len(x)} clip(s), not {expected}: one row per clip of "
                f"scene_embedding_size={self.feature_dim} values, as its model declares; fix the module"
            )
        broken = int((~torch.isfinite(rows).all(dim=1)).sum())
        if broken:
            raise ConfigError(f"{said} NaN or infinity for {broken} of {len(x)} clip(s); fix the module or its model file")
        return rows.float()

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
            "model_file_sha256": file_digest(self.model_file, "frontend.model_file") if self.model_file else "",
        }


def not_floats(out: Any) -> str:
    """What ``out`` is where it is not an array of floating-point numbers ('' where it is)."""
    if isinstance(out, torch.Tensor):
        return "" if out.is_floating_point() else f"a tensor of {out.dtype}"
    try:
        dtype = np.asarray(out).dtype
    except (ValueError, TypeError):  # ragged sequences, objects numpy cannot take
        return f"a {type(out).__name__}, not an array"
    return "" if np.issubdtype(dtype, np.floating) else f"an array of {dtype} ({type(out).__name__})"


def not_numbers(array: np.ndarray) -> str:
    """What an embeddings file's array holds where it is not real numbers ('' where it is):
    integers and floats are taken as they are, anything else (complex, bool, text) refused."""
    if np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating):
        return ""
    return f"holds {array.dtype} values, not real numbers"


# How NumPy's files start: an .npy; an .npz (a zip archive, or an empty one).
NUMPY_MAGIC = (b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")


@contextmanager
def numpy_file(path: Path) -> Iterator[np.ndarray | np.lib.npyio.NpzFile]:
    """``np.load`` of a regular file (see open_regular), pickles refused: an .npy's array, or
    an .npz whose arrays are read inside the block. A file NumPy cannot read (another format,
    cut short, pickled objects) is a ConfigError naming it."""
    with open_regular(path, "frontend.path") as fh:
        if not fh.read(6).startswith(NUMPY_MAGIC):
            raise ConfigError(f"frontend.path: {path} is not a NumPy file; save the vectors with np.save or np.savez")
        fh.seek(0)
        try:
            yield np.load(fh, allow_pickle=False)
        except ConfigError:
            raise
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
            raise ConfigError(
                f"frontend.path: {path} cannot be read as NumPy numbers ({err}); save numeric arrays with np.save or np.savez"
            ) from None


def read_npy(path: Path) -> np.ndarray:
    """The array of an .npy file."""
    with numpy_file(path) as loaded:
        if not isinstance(loaded, np.ndarray):
            raise ConfigError(f"frontend.path: {path} is an .npz archive; the folder's files are .npy, one vector each")
        return loaded


def read_npz(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Those of ``names`` that an .npz file holds."""
    with numpy_file(path) as loaded:
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ConfigError(
                f"frontend.path={path}: an .npy file (one array); give an .npz of clip_ids and embeddings, or a folder of <clip id>.npy"
            )
        return {name: loaded[name] for name in names if name in loaded.files}


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
        vectors = self._read_folder() if self.path.is_dir() else self._read_table()
        broken = [cid for cid, v in vectors.items() if not np.isfinite(v).all()]
        if broken:
            raise ConfigError(f"frontend.path={self.path}: {len(broken)} vector(s) hold NaN or infinity, e.g. {broken[0]}")
        return {cid: v.astype(np.float32) for cid, v in vectors.items()}

    def _read_folder(self) -> dict[str, np.ndarray]:
        files = sorted(self.path.rglob("*.npy"))
        if not files:
            raise ConfigError(f"frontend.path={self.path}: the folder holds no .npy files")
        return {f.relative_to(self.path).with_suffix("").as_posix(): self._vector(f) for f in files}

    @staticmethod
    def _vector(file: Path) -> np.ndarray:
        vector = read_npy(file)
        fault = not_numbers(vector)
        if fault:
            raise ConfigError(f"frontend.path: {file} {fault}; save each vector as floats")
        if vector.ndim == 2 and vector.shape[0] == 1:
            vector = vector[0]
        if vector.ndim != 1 or not vector.size:
            raise ConfigError(f"frontend.path: {file} holds an array of shape {vector.shape}; one vector per clip is needed")
        return vector

    def _read_table(self) -> dict[str, np.ndarray]:
        """The rows of an .npz by clip id: one row per id, each id once (a repeated id would
        leave the vector used to whichever row came last)."""
        arrays = read_npz(self.path, ("clip_ids", "embeddings", "features"))
        matrix = arrays.get("embeddings", arrays.get("features"))
        if "clip_ids" not in arrays or matrix is None:
            raise ConfigError(f"frontend.path={self.path}: not an .npz with clip_ids and embeddings (it holds {', '.join(arrays) or 'neither'})")
        ids = arrays["clip_ids"]
        fault = not_numbers(matrix)
        if fault:
            raise ConfigError(f"frontend.path={self.path}: embeddings {fault}; save them as floats")
        if ids.ndim != 1:
            raise ConfigError(f"frontend.path={self.path}: clip_ids has shape {ids.shape}; a list of ids (one dimension) is needed")
        if matrix.ndim != 2 or len(matrix) != len(ids) or not matrix.size:
            raise ConfigError(f"frontend.path={self.path}: embeddings are {matrix.shape} for {len(ids)} clip ids; one row per clip id is needed")
        counts = Counter(map(str, ids))
        repeated = [cid for cid, n in counts.items() if n > 1]
        if repeated:
            raise ConfigError(
                f"frontend.path={self.path}: {len(repeated)} clip id(s) listed more than once, e.g. {repeated[0]} "
                f"({counts[repeated[0]]} rows); keep one row per clip id"
            )
        return {str(i): row for i, row in zip(ids, matrix)}

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
        if self.path.is_dir():
            files = sorted(self.path.rglob("*.npy"))
            listing = "\n".join(f"{f.relative_to(self.path).as_posix()} {file_digest(f, 'frontend.path')}" for f in files)
        else:  # a FIFO or device too: file_digest refuses it rather than hashing nothing
            listing = f"{self.path.name} {file_digest(self.path, 'frontend.path')}"
        return {"embeddings_sha256": hashlib.sha256(listing.encode()).hexdigest()}
