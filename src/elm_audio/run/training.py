"""weights=trained: the premise test. The same front-end as a random run (same config, same
seed for the initial weights), followed by the same feature-map means and a linear softmax
layer, trained end to end with cross-entropy under the dataset's protocol: for each test fold,
fit on the training folds, stop early on the validation fold, score the test fold (fixed
partitions: train / validation / test). No augmentation.

The decoded inputs (log-mel or waveform) are computed once and kept in the feature cache for
the epochs. Every fold checkpoints every epoch under ``<cache.dir>/training/<key>/``, so an
interrupted training resumes from its last epoch; a finished fold keeps its result. One lock
per key: a second run of the same training waits, then resumes or reuses what the first left.
Checkpoints and results are written with a SHA-256 beside them and verified on every read
(checkpoints load with ``weights_only=True``: tensors and plain values, no code); one that
fails is named, set aside and computed again.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm  # not tqdm.auto: no widget warning where a notebook imports it

from ..devices import convolutions_tuned, denormals_flushed
from ..evaluation.protocols import Evaluation, Split, SplitResult
from ..evaluation.scoring import Score
from ..extraction.precision import autocast
from ..frontends import FrontEnd
from ..settings.settings import Recipe, Settings
from ..stores.cache import (
    FeatureCache,
    Features,
    cache_key,
    read_checked,
    set_aside,
    write_checked,
)
from ..stores.shared_files import make_folder
from . import record
from .features import load_or_extract
from .plan import Plan


class Probe(nn.Module):
    """A front-end's feature-map means, standardized as the random runs' classifiers see them
    (the initial front-end's mean and deviation over the training clips, then fixed), then a
    linear softmax layer."""

    def __init__(self, frontend: FrontEnd, n_features: int, n_classes: int):
        super().__init__()
        self.frontend = frontend
        self.head = nn.Linear(n_features, n_classes)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def standardize_on(self, batches_of_inputs) -> None:
        with torch.no_grad():
            feats = torch.cat([self.frontend.features(x).float() for x in batches_of_inputs])
        self.mean.copy_(feats.mean(0))
        self.scale.copy_(feats.std(0, correction=0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.frontend.features(x) - self.mean) / self.scale)


def cached_inputs(settings: Settings, plan: Plan, cache: FeatureCache) -> tuple[Features, tuple[int, ...]]:
    """Every clip's network input (flattened rows), decoded once and kept in the cache."""
    frontend = plan.frontend
    with torch.no_grad():
        shape = tuple(frontend.prepare(torch.zeros(1, frontend.input_samples), settings.extraction.inputs.stft_padding).shape[1:])
    key = cache_key({"inputs_for": plan.key})
    with cache.lock(key) as locked:
        entry = (key, int(np.prod(shape)), lambda x: x.flatten(1))
        inputs, _ = load_or_extract(settings.extraction, settings.device, plan, cache, locked, entry)
    return inputs, shape


def train_and_evaluate(settings: Settings, plan: Plan, cache: FeatureCache) -> tuple[Evaluation, Features]:
    recipe = settings.recipe
    inputs, shape = cached_inputs(settings, plan, cache)
    labels = np.array(inputs.labels)
    classes = sorted(set(labels))
    codes = np.searchsorted(classes, labels)
    usable = inputs.usable()
    key = run_key(settings, plan)
    folder = settings.cache_dir / "training" / key
    start = time.perf_counter()
    results = []
    # the same training elsewhere: wait for it
    with cache.lock(f"training-{key}") as locked, convolutions_tuned(settings.device), denormals_flushed(settings.device):
        for split in (s.keep(usable) for s in plan.splits):
            saved = saved_result(folder / split.name / "result.json", split, codes, classes)
            if saved is None and not locked:
                raise cache.read_only_error()
            results.append(saved or train_split(settings, plan, recipe, inputs.matrix, shape, codes, classes, split,
                                                folder / split.name))  # fmt: skip
    seconds = time.perf_counter() - start
    n_train = np.mean([len(s.train) for s in plan.splits])
    # a training step costs about three forward passes (forward, and backward through inputs and weights)
    record.log_metrics({"train_seconds": seconds})
    record.log_metrics({"gflops_per_epoch": 3 * plan.profile["gflops_per_clip"] * float(n_train)})
    return Evaluation(results, seconds, settings.protocol.mode, settings.protocol.fold_weighting), inputs


def run_key(settings: Settings, plan: Plan) -> str:
    """What determines a training: the inputs and front-end, the recipe, the protocol's splits."""
    return cache_key(
        {
            "features": plan.key,
            "recipe": settings.weights,
            "splits": [(s.name, len(s.train), len(s.test)) for s in plan.splits],
            "mode": settings.protocol.mode,
        }
    )


def batches(rows: np.ndarray, size: int, generator: torch.Generator | None = None):
    order = rows if generator is None else rows[torch.randperm(len(rows), generator=generator).numpy()]
    for i in range(0, len(order), size):
        yield order[i : i + size]


def load(X: np.ndarray, rows: np.ndarray, shape, device) -> torch.Tensor:
    """Cached inputs of ``rows`` (flattened in the cache), in the network's shape, on ``device``."""
    return torch.from_numpy(np.asarray(X[rows])).reshape(len(rows), *shape).to(device)


def predict(probe: Probe, X: np.ndarray, shape, rows: np.ndarray, recipe: Recipe, device, precision: str) -> np.ndarray:
    probe.eval()
    out = []
    with torch.no_grad():
        for batch in batches(rows, recipe.batch_size):
            with autocast(device, precision):
                out.append(probe(load(X, batch, shape, device)).float().argmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, int)


def warn(message: str) -> None:
    print(f"elm_audio: {message}", file=sys.stderr, flush=True)


def saved_result(path: Path, split: Split, codes: np.ndarray, classes: list) -> SplitResult | None:
    """A finished fold's result, verified: its checksum, and its accuracies against the
    predictions stored with it; None where there is none or it failed (then it is set aside)."""
    if not path.is_file():
        return None
    try:
        saved = json.loads(read_checked(path))
        named = {"test": np.array(saved["predictions"]), "val": np.array(saved["val_predictions"])}
        for part, rows in (("test", split.test), ("val", split.validation)):
            if len(named[part]) != len(rows) or not set(named[part]) <= set(classes):
                raise ValueError(f"its {part} predictions are not of the {len(rows)} clips of {split.name}")
            recomputed = float(np.mean(np.searchsorted(classes, named[part]) == codes[rows])) if len(rows) else np.nan
            if not np.array_equal([saved[part]], [recomputed], equal_nan=True):  # no validation clips: NaN
                raise ValueError(f"its {part} accuracy is not that of its predictions")
    except (OSError, ValueError, KeyError, TypeError) as err:
        warn(set_aside(path, str(err)) + "; training the fold again")
        return None
    return SplitResult(split.name, saved["val"], Score(saved["test"]), split.test, named["test"], len(split.validation))


def save(path: Path, value) -> None:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    write_checked(path, buffer.getvalue())


def resumed(path: Path) -> dict | None:
    """The interrupted training's checkpoint, verified and loaded as tensors and plain values
    only (``weights_only``: nothing in it can run code); None where it fails (set aside)."""
    if not path.is_file():
        return None
    try:
        return torch.load(io.BytesIO(read_checked(path)), weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        warn(set_aside(path, str(err).splitlines()[0]) + "; training the fold from its start")
        return None


def train_split(settings: Settings, plan, recipe: Recipe, X, shape, codes, classes, split: Split, folder: Path) -> SplitResult:
    """One test fold: train, stop early on validation, score the test fold; resumable."""
    device, precision = settings.device, settings.precision
    make_folder(folder, writable_by_group=True)
    torch.manual_seed(settings.seed)
    probe = Probe(settings.build_frontend().trainable(), plan.profile["feature_dim"], len(classes)).to(device)
    if precision == "bf16":  # oneDNN's bf16 kernels take channels-last maps
        probe = probe.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(probe.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    generator = torch.Generator().manual_seed(settings.seed)
    state = {"epoch": 0, "best_val": -1.0, "best": None, "stale": 0}
    probe.standardize_on(load(X, rows, shape, device) for rows in batches(split.train, recipe.batch_size))
    last = folder / "last.pt"
    saved = resumed(last)
    if saved is not None:  # resume where the interrupted training stopped
        probe.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        generator.set_state(saved["generator"])
        state = saved["state"]
    y = torch.from_numpy(codes)
    bar = tqdm(total=recipe.max_epochs, initial=state["epoch"], desc=f"training {settings.names.frontend} {split.name}",
               unit="epoch", disable=not settings.extraction.progress)  # fmt: skip
    while state["epoch"] < recipe.max_epochs and state["stale"] < recipe.patience:
        probe.train()
        losses = []
        for batch in batches(split.train, recipe.batch_size, generator):
            with autocast(device, precision):
                loss = F.cross_entropy(probe(load(X, batch, shape, device)).float(), y[batch].to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        val = float(np.mean(predict(probe, X, shape, split.validation, recipe, device, precision) == codes[split.validation]))
        state["epoch"] += 1
        if val > state["best_val"]:
            state.update(best_val=val, best=copy.deepcopy(probe.state_dict()), stale=0)
        else:
            state["stale"] += 1
        record.log_metrics({f"{split.name}_epoch_train_loss": float(np.mean(losses)), f"{split.name}_epoch_val_accuracy": val},
                           step=state["epoch"])  # fmt: skip
        save(last, {"model": probe.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                    "state": state})  # fmt: skip
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", val=f"{val:.3f}")
    bar.close()
    probe.load_state_dict(state["best"])
    named = {part: [classes[p] for p in predict(probe, X, shape, rows, recipe, device, precision)]
             for part, rows in (("test", split.test), ("val", split.validation))}  # fmt: skip
    test = float(np.mean(np.searchsorted(classes, named["test"]) == codes[split.test]))
    val = float(np.mean(np.searchsorted(classes, named["val"]) == codes[split.validation]))
    result = {"val": val, "test": test, "predictions": named["test"], "val_predictions": named["val"], "epochs": state["epoch"]}
    write_checked(folder / "result.json", json.dumps(result).encode())
    last.unlink(missing_ok=True)
    (folder / "last.pt.sha256").unlink(missing_ok=True)
    return SplitResult(split.name, val, Score(test), split.test, np.array(named["test"]), len(split.validation))
