"""Validation metrics of a classifier: ROC AUC (binary, or one-vs-rest macro) and accuracy.

AUC is computed as the probability that a random positive case scores above a random negative one (ties count
half), which is exactly the area under the ROC curve and needs no extra dependency. It is undefined (None) when
the validation cases hold only one class; one-vs-rest macro AUC averages the classes for which it is defined.
"""

from __future__ import annotations

import numpy as np


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """AUC of `scores` (N,) for the boolean truth `positive` (N,); None without both classes."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def macro_auc(probabilities: np.ndarray, targets: np.ndarray) -> float | None:
    """Binary AUC of class 1 for two classes; otherwise the mean one-vs-rest AUC over classes where it is defined."""
    probabilities = np.asarray(probabilities)
    targets = np.asarray(targets)
    if probabilities.shape[1] == 2:
        return binary_auc(probabilities[:, 1], targets == 1)
    values = [binary_auc(probabilities[:, k], targets == k) for k in range(probabilities.shape[1])]
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def accuracy(probabilities: np.ndarray, targets: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=1) == np.asarray(targets)))
