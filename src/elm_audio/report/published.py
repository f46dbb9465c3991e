"""Published figures the report sets beside the random-weight results.

Pons & Serra (ICASSP 2019): published mean accuracies over 3 runs, in % (docs/method.md).
Keys: (dataset, front-end, feature size, classifier); the MFCC baseline has one size. The fold
datasets' figures come from the paper's protocol (the same folds choose and score).

MagnaTagATune (top-50 tags, the original MTT split): trained models' ROC-AUC and PR-AUC in %,
from Pons's PhD thesis (2019), Tables 5.2 and 5.3, as context for the random-weight tagging
results (mAP is PR-AUC's macro average over the tags).
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

TAGGING_SOURCE = "Pons (PhD thesis, 2019), Tables 5.2 and 5.3: trained models, MagnaTagATune top-50 tags, original split"
# model -> (ROC-AUC, PR-AUC) in %
TRAINED_TAGGING: dict[str, dict[str, tuple[float, float]]] = {
    "mtat": {
        "spectrogram model (musically motivated: timbral and temporal filters)": (90.40, 38.11),
        "VGG (reproduced)": (89.99, 37.56),
        "SampleCNN (reproduced)": (88.56, 34.38),
    }
}
# elm_audio's front-end with the architecture of each trained model: its random-weight counterpart
TAGGING_FRONTENDS: dict[str, str] = {
    "timbral_temporal": "spectrogram model (musically motivated: timbral and temporal filters)",
    "vgg": "VGG (reproduced)",
    "sample_level": "SampleCNN (reproduced)",
}


def published(dataset: str, frontend: str, feature_size: str, classifier: str) -> float | None:
    return PUBLISHED.get((dataset, frontend, feature_size, classifier)) or PUBLISHED.get(
        (dataset, frontend, "*", classifier)
    )


def is_papers(dataset: str) -> bool:
    return dataset in TRAINED


def is_tagging(dataset: str) -> bool:
    """A dataset with trained tagging models' published figures (MagnaTagATune)."""
    return dataset in TRAINED_TAGGING


def published_tagging(dataset: str, frontend: str) -> str | None:
    """The trained model with ``frontend``'s architecture, as the table writes it: "89.99 / 37.56
    (VGG (reproduced))"; None where there is none."""
    model = TAGGING_FRONTENDS.get(frontend)
    figures = TRAINED_TAGGING.get(dataset, {}).get(model) if model else None
    return f"{figures[0]:.2f} / {figures[1]:.2f} ({model})" if figures else None
