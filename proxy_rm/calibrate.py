"""Calibration of a proxy reward model (Gao et al. 2022, section 2.2).

- Recentring: subtract the mean score of the initial policy's samples, so pi_init scores 0.
- Logit scale: one scalar s fitted on the validation comparisons so that sigmoid(s * (r_a - r_b))
  is a calibrated preference probability (temperature scaling). It does not change any ranking,
  so best-of-n and the fitted laws are unaffected; it makes proxy scores comparable in units.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_expit


def recentre_offset(scores_on_init: np.ndarray) -> np.ndarray:
    """Per-member offset to subtract: mean score on samples of the initial policy.

    Arguments: scores_on_init float[k, N] (or [N]). Returns float[k] (or a scalar).
    """
    return np.asarray(scores_on_init, dtype=np.float64).mean(axis=-1)


def bt_cross_entropy(margin: np.ndarray, label: np.ndarray, scale: float = 1.0) -> float:
    """Mean Bradley-Terry cross-entropy of labels (1: a preferred) given margins r_a - r_b."""
    sign = 2.0 * np.asarray(label, dtype=np.float64) - 1.0
    return float(-np.mean(log_expit(scale * sign * np.asarray(margin, dtype=np.float64))))


def fit_logit_scale(margin: np.ndarray, label: np.ndarray) -> tuple[float, float, float]:
    """Temperature scaling on validation margins.

    Returns (scale, cross_entropy_before (scale 1), cross_entropy_after). The loss is convex in
    the scale, so a bounded scalar minimisation finds the global optimum.
    """
    before = bt_cross_entropy(margin, label, 1.0)
    res = minimize_scalar(lambda s: bt_cross_entropy(margin, label, s), bounds=(1e-4, 1e3), method="bounded")
    scale = float(res.x)
    after = bt_cross_entropy(margin, label, scale)
    if after > before:  # keep the identity when it is already optimal (numerical safety)
        return 1.0, before, before
    return scale, before, after
