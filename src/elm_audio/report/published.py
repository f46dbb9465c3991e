"""Pons & Serra (ICASSP 2019): published mean accuracies over 3 runs, in % (spec/method.md).

Keys: (dataset, front-end, feature size, classifier); the MFCC baseline has one size. The fold
datasets' figures come from the paper's protocol (the same folds choose and score).
"""

from __future__ import annotations

PUBLISHED: dict[tuple[str, str, str, str], float] = {
    ("gtzan", "vgg", "large", "svm"): 59.65,
    ("gtzan", "timbral_temporal", "large", "svm"): 56.89,
    ("gtzan", "mfcc", "*", "svm"): 53.44,
    ("extended_ballroom", "temporal", "large", "svm"): 89.82,
    ("extended_ballroom", "mfcc", "*", "svm"): 63.25,
    ("us8k", "vgg", "large", "svm"): 70.74,
    ("us8k", "mfcc", "*", "svm"): 65.49,
}
# Trained CNNs of other papers, for scale.
TRAINED: dict[str, str] = {"gtzan": "82.1", "extended_ballroom": "93.7", "us8k": "73 (79 with augmentation)"}


def published(dataset: str, frontend: str, feature_size: str, classifier: str) -> float | None:
    return PUBLISHED.get((dataset, frontend, feature_size, classifier)) or PUBLISHED.get(
        (dataset, frontend, "*", classifier)
    )


def is_papers(dataset: str) -> bool:
    return dataset in TRAINED
