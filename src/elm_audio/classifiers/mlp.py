"""The MLP probe (``classifier=mlp``): HEAR's downstream model as heareval trains it on scene
embeddings, in torch on ``device``, seeded by ``random_state`` (deterministic on the CPU).

What it follows, from heareval's ``heareval/predictions/task_predictions.py`` (``PARAM_GRID``,
``FullyConnectedPrediction``, ``task_predictions_train``, the version that scored HEAR 2021):

- the network: ``hidden_layers`` blocks of Linear(``hidden_size``) -> BatchNorm1d -> Dropout ->
  ReLU (heareval's ``hidden_norm=BatchNorm1d``, ``norm_after_activation=False``), then a Linear
  projection to one output per class or tag; no normalization of the embedding itself
  (``embedding_norm=Identity``);
- initialization: ``xavier_uniform`` or ``xavier_normal`` weights (both in heareval's grid) with
  the gain of the activation before the layer (``calculate_gain('linear')`` = 1 for the first,
  ``'relu'`` for the later ones and the projection), biases as torch's Linear draws them;
- Adam (torch's defaults, no weight decay), batches of ``batch_size`` (1024) drawn in a new
  random order every epoch (heareval shuffles the training rows when they are in memory, its
  default);
- losses: cross-entropy (multiclass), BCE-with-logits, mean over rows and tags (multilabel);
- validation every ``validation_interval`` epochs (``check_val_every_n_epoch=3``), scored with
  the task's primary metric (here: accuracy, mAP over the tags present in the validation rows,
  or R²); early stopping after ``patience`` (20) validations without a strict improvement (as
  Lightning's EarlyStopping counts it: 20 checks, 60 epochs), at most ``max_epochs`` (500); the
  model of the best validation is restored (heareval's ModelCheckpoint) and predicts;
- the grid: hidden_layers {1, 2} x lr {3.2e-3, 1e-3, 3.2e-4, 1e-4} x initialization
  {xavier_uniform, xavier_normal}, hidden 1024, dropout 0.1: ``paper_grid`` in
  ``conf/classifier/mlp.yaml``; the sweeper runs its points and keeps the best by the
  validation objective, as heareval keeps the grid point with the best validation score.

Where it differs:

- heareval tries 8 of the grid's 16 points, drawn at random (``--grid-points 8``); the
  ``paper_grid`` sweep runs all 16. heareval chooses the point on the first split only and
  reuses it on the other folds; here the sweeper's objective is the mean over the protocol's
  splits.
- ``classifier.standardize: true`` (the project's default for every classifier): the embeddings
  are standardized on the training rows first; heareval feeds them as they are
  (``classifier.standardize=false`` for that).
- regression, which heareval does not have: MSE on targets standardized on the training rows,
  early stopping on R², predictions in the targets' units.
- a last training batch of a single row is dropped (BatchNorm cannot train on one row; Lightning
  would fail on it); validation also runs after the last epoch where ``max_epochs`` is not a
  multiple of ``validation_interval`` (so that a short run still has a model to keep).
- dropout masks, shuffles and initial weights come from generators seeded by ``random_state``
  (not the process-wide seed heareval sets with ``seed_everything(42)``).
- without a validation split (``fit`` without ``eval_set``) ``validation_fraction`` of the
  training rows is held out for early stopping (stratified by class where every class has two
  rows); heareval always has its task's validation split.
"""

from __future__ import annotations

import copy
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from ..devices import resolve_device
from .kinds import (
    TaggerMixin,
    check_tags,
    check_targets,
    macro_average_precision,
    standardizer,
)


class SeededDropout(nn.Module):
    """Dropout whose masks come from the module's own generator (on the device of the inputs),
    not from the process-wide random state."""

    def __init__(self, p: float, generator: torch.Generator):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


def heareval_network(n_features: int, n_outputs: int, hidden_size: int, hidden_layers: int, dropout: float,
                     initialization: str, generator: torch.Generator, dropout_generator: torch.Generator) -> nn.Sequential:  # fmt: skip
    """heareval's FullyConnectedPrediction (BatchNorm1d before dropout and ReLU), drawn from ``generator``."""
    init = {"xavier_uniform": nn.init.xavier_uniform_, "xavier_normal": nn.init.xavier_normal_}[initialization]
    layers: list[nn.Module] = []
    width, last_activation = n_features, "linear"

    def draw(layer: nn.Linear) -> nn.Linear:
        with torch.no_grad():
            init(layer.weight, gain=nn.init.calculate_gain(last_activation), generator=generator)
            bound = 1.0 / np.sqrt(layer.in_features)  # torch's own bias draw for Linear
            layer.bias.uniform_(-bound, bound, generator=generator)
        return layer

    for _ in range(hidden_layers):
        layers += [draw(nn.Linear(width, hidden_size)), nn.BatchNorm1d(hidden_size), SeededDropout(dropout, dropout_generator), nn.ReLU()]
        width, last_activation = hidden_size, "relu"
    layers.append(draw(nn.Linear(width, n_outputs)))
    return nn.Sequential(*layers)


class _MLPBase(BaseEstimator):
    kind: str
    _y_checks: dict = {}  # scikit-learn's checks of y for the kind (validate_data's arguments)

    _parameter_constraints: dict = {
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "hidden_layers": [Interval(Integral, 0, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "validation_interval": [Interval(Integral, 1, None, closed="left")],
        "initialization": [StrOptions({"xavier_uniform", "xavier_normal"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "device": [str],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        hidden_size: int = 1024,
        hidden_layers: int = 1,
        learning_rate: float = 1e-3,
        dropout: float = 0.1,
        max_epochs: int = 500,
        patience: int = 20,
        batch_size: int = 1024,
        validation_interval: int = 3,
        initialization: str = "xavier_uniform",
        validation_fraction: float = 0.1,
        device: str = "cpu",
        random_state=None,
    ):
        self.hidden_size = hidden_size
        self.hidden_layers = hidden_layers
        self.learning_rate = learning_rate
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.validation_interval = validation_interval
        self.initialization = initialization
        self.validation_fraction = validation_fraction
        self.device = device
        self.random_state = random_state

    # what each kind defines
    def _check_y(self, y, n: int, validation: bool = False):
        """``y`` (or the eval_set's) checked for this kind."""
        raise NotImplementedError

    def _encode(self, y) -> np.ndarray:
        """The training targets as the loss takes them (and what the kind learns of them: classes, scale)."""
        raise NotImplementedError

    def _loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _score(self, outputs: np.ndarray, y) -> float:
        """The primary metric of the network's outputs against ``y`` as the user gave it."""
        raise NotImplementedError

    def _stratify(self, y) -> np.ndarray | None:
        return None

    def _split(self, X, y, rng):
        """The training and validation rows where ``fit`` has no ``eval_set``."""
        seed = int(rng.randint(2**31 - 1))
        try:
            return train_test_split(X, y, test_size=self.validation_fraction, random_state=seed, stratify=self._stratify(y))
        except ValueError:  # a class with one row, or fewer validation rows than classes
            return train_test_split(X, y, test_size=self.validation_fraction, random_state=seed)

    def fit(self, X, y, eval_set=None) -> "_MLPBase":
        """Train with early stopping on ``eval_set=(X_val, y_val)`` (in the units X is given in:
        ``kinds.fit_with_eval_set`` passes it through a pipeline's standardization), or on
        ``validation_fraction`` of the rows where there is none."""
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float32, np.float64], **self._y_checks)
        y = self._check_y(y, len(X))
        rng = check_random_state(self.random_state)
        if eval_set is None:
            X, X_val, y, y_val = self._split(X, y, rng)
        else:
            X_val, y_val = eval_set
            X_val = validate_data(self, X_val, dtype=[np.float32, np.float64], reset=False)
            y_val = self._check_y(y_val, len(X_val), validation=True)
        if len(X) < 2 and self.hidden_layers > 0:
            raise ValueError(f"{type(self).__name__} needs at least 2 training rows (batch normalization); got {len(X)}")
        targets = self._encode(y)
        if np.ndim(y_val) == 2 and np.shape(y_val)[1] != self.n_outputs_:
            raise ValueError(f"eval_set's y has {np.shape(y_val)[1]} tags, the training rows' {self.n_outputs_}")
        self.device_ = dev = resolve_device(self.device)
        init_seed, shuffle_seed, dropout_seed = (int(s) for s in rng.randint(2**31 - 1, size=3))
        dropout_gen = torch.Generator(device=dev).manual_seed(dropout_seed)
        net = heareval_network(X.shape[1], targets.shape[1] if targets.ndim == 2 else self.n_outputs_, self.hidden_size,
                               self.hidden_layers, self.dropout, self.initialization,
                               torch.Generator().manual_seed(init_seed), dropout_gen).to(dev)  # fmt: skip
        shuffle_gen = torch.Generator().manual_seed(shuffle_seed)
        x = torch.as_tensor(np.require(X, dtype=np.float32, requirements="W"), device=dev)
        t = torch.as_tensor(targets, device=dev)
        x_val = torch.as_tensor(np.require(X_val, dtype=np.float32, requirements="W"), device=dev)
        opt = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        best, best_state, best_epoch, waited = -np.inf, None, 0, 0
        self.validation_scores_ = []
        epoch = 0
        for epoch in range(1, self.max_epochs + 1):
            net.train()
            order = torch.randperm(len(x), generator=shuffle_gen).to(dev)
            for start in range(0, len(x), self.batch_size):
                rows = order[start : start + self.batch_size]
                if len(rows) == 1 and self.hidden_layers > 0:
                    continue  # BatchNorm cannot train on one row
                opt.zero_grad(set_to_none=True)
                self._loss(net(x[rows]), t[rows]).backward()
                opt.step()
            if epoch % self.validation_interval and epoch != self.max_epochs:
                continue
            score = self._score(self._forward(net, x_val), y_val)
            self.validation_scores_.append((epoch, score))
            if best_state is None or (np.isfinite(score) and score > best):  # strict, as Lightning's
                best, best_epoch, waited = (score if np.isfinite(score) else -np.inf), epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                waited += 1
                if waited >= self.patience:
                    break
        net.load_state_dict(best_state)
        net.eval()
        self.network_ = net
        self.best_epoch_, self.best_score_, self.n_epochs_ = best_epoch, float(best), epoch
        self.stopped_early_ = epoch < self.max_epochs
        return self

    def _forward(self, net: nn.Module, x: torch.Tensor) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            out = [net(x[i : i + 8192]) for i in range(0, len(x), 8192)]
        return torch.cat(out).double().cpu().numpy() if out else np.zeros((0, self._width()))

    def _width(self) -> int:
        return self.network_[-1].out_features

    def _outputs(self, X) -> np.ndarray:
        check_is_fitted(self, "network_")
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        return self._forward(self.network_, torch.as_tensor(np.require(X, dtype=np.float32, requirements="W"), device=self.device_))

    def __sklearn_tags__(self):
        """Float32 products summed in an order that depends on the number of rows."""
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags


class MLPProbeClassifier(ClassifierMixin, _MLPBase):
    """heareval's MLP for one label a clip: softmax outputs, cross-entropy, early stopping on
    validation accuracy. ``decision_function`` returns the logits (for two classes, one value a
    row: positive for ``classes_[1]``)."""

    kind = "multiclass"

    def _check_y(self, y, n, validation=False):
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != n:
            raise ValueError(f"y must be 1-D with one label per row of X ({n}); got shape {y.shape}")
        check_classification_targets(y)
        return y

    def _stratify(self, y):
        return y

    def _encode(self, y):
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes in the data; got {len(self.classes_)} class")
        self.n_outputs_ = len(self.classes_)
        return codes.astype(np.int64)

    def _loss(self, outputs, targets):
        return F.cross_entropy(outputs, targets)

    def _score(self, outputs, y):
        return float(np.mean(self.classes_[outputs.argmax(axis=1)] == y)) if len(y) else float("nan")

    def decision_function(self, X) -> np.ndarray:
        out = self._outputs(X)
        return out[:, 1] - out[:, 0] if len(self.classes_) == 2 else out

    def predict_proba(self, X) -> np.ndarray:
        out = self._outputs(X)
        out -= out.max(axis=1, keepdims=True)
        e = np.exp(out)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self._outputs(X).argmax(axis=1)]


class MLPProbeTagger(TaggerMixin, ClassifierMixin, _MLPBase):
    """heareval's MLP for tags: sigmoid outputs, BCE-with-logits, early stopping on the mAP of
    the validation rows (the tags with a positive there). ``decision_function`` returns the
    logits (n_samples, n_tags); ``predict`` 1 where a logit is positive."""

    kind = "multilabel"
    _y_checks = {"multi_output": True}

    def _check_y(self, y, n, validation=False):
        Y = check_tags(y, "y_val" if validation else "y")
        if len(Y) != n:
            raise ValueError(f"X has {n} rows and y {len(Y)}")
        return Y

    def _encode(self, y):
        self.classes_ = np.arange(y.shape[1])
        self.n_outputs_ = y.shape[1]
        return y.astype(np.float32)

    def _loss(self, outputs, targets):
        return F.binary_cross_entropy_with_logits(outputs, targets)

    def _score(self, outputs, y):
        return macro_average_precision(y, outputs)

    def decision_function(self, X) -> np.ndarray:
        return self._outputs(X)

    def predict_proba(self, X) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self._outputs(X)))

    def predict(self, X) -> np.ndarray:
        return (self._outputs(X) > 0).astype(np.uint8)


class MLPProbeRegressor(RegressorMixin, _MLPBase):
    """The same MLP for targets (heareval has no regression): one linear output, MSE on targets
    standardized on the training rows, early stopping on validation R²; ``predict`` returns
    values in the targets' units."""

    kind = "regression"
    _y_checks = {"y_numeric": True}

    def _check_y(self, y, n, validation=False):
        y = check_targets(y, "y_val" if validation else "y")
        if len(y) != n:
            raise ValueError(f"X has {n} rows and y {len(y)}")
        return y

    def _encode(self, y):
        self.target_mean_, self.target_scale_ = standardizer(y)
        self.n_outputs_ = 1
        return ((y - self.target_mean_) / self.target_scale_).astype(np.float32)[:, None]

    def _loss(self, outputs, targets):
        return F.mse_loss(outputs, targets)

    def _score(self, outputs, y):
        if len(y) < 2:
            return float("nan")
        pred = outputs[:, 0] * self.target_scale_ + self.target_mean_
        total = np.sum((y - y.mean()) ** 2)
        return float(1.0 - np.sum((y - pred) ** 2) / total) if total > 0 else float("nan")

    def predict(self, X) -> np.ndarray:
        return self._outputs(X)[:, 0] * self.target_scale_ + self.target_mean_
