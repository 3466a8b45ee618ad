"""What every criterion shares: thresholds and the row format (the proxy ladder and its curves, which the
criteria read, are `scaling.ladder`'s).

A check is a row {check, target, measured, statistic, passed}: `statistic` is the number the verdict
compares with its threshold (None where no single number decides it), `passed` True, False or None
(None: this data cannot decide it; the reason is in `measured`).
"""

from __future__ import annotations

import math

import numpy as np

from scaling.fmt import json_num

R2_BON, R2_RL = 0.9, 0.8  # unweighted R² of each law on its curve
N_SE = 2.0  # bon_overopt: the drop exceeds this many standard errors over prompts
P_MAX = 0.05  # every significance test: one-sided p < P_MAX (the F-test: does not reject at P_MAX)
ADVANCE_FRAC = 0.6  # advance prediction: fitted on d <= ADVANCE_FRAC * d_max
NRMSE_MAX = 0.25  # ... predicts the rest with RMSE / (max - min of the whole curve) <= NRMSE_MAX
MIN_SLOPE_SIZES = 5  # the slopes' intervals are judged with at least this many proxy sizes
KL_GRID = 8  # kl_efficiency: KLs evenly spaced in [KL_LO, 1] x the smaller of the two largest KLs
KL_LO = 0.25
KL_EFF_FRAC = 0.75  # ... BoN at least as good as RL for this fraction of proxies
PENALTY_FRAC = 0.9  # penalty_early_stopping: this fraction of penalised evaluations within 2 SE
MIN_DATA_SIZES = 4  # data_size: judged with at least this many data sizes
MIN_VAL_PROXIES = 4  # val_loss: judged with at least this many proxies
RHO_VAL = -0.8  # val_loss: the rank correlation reported against this value


def fmt(x, p=3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{p}f}"


def row(check: str, target: str, measured: str, passed, statistic=None) -> dict:
    stat = None
    if isinstance(statistic, (int, float, np.floating, np.integer)) and not isinstance(statistic, bool):
        stat = json_num(float(statistic))
    return {"check": check, "target": target, "measured": measured, "statistic": stat, "passed": passed}


def combine(verdicts: list) -> bool | None:
    """False when any is False, else None when any is None, else True (an empty list: None)."""
    if not verdicts:
        return None
    return False if False in verdicts else (None if None in verdicts else True)
