"""Synthetic ladders over several replicates for the pooled verdict's tests (tests/test_verdict.py): each
replicate is `tests/criteria_world.py`'s ideal ladder with its coefficients jittered and its own noise,
plus per-prompt best-of-n rows, proxies (val_loss, val_acc) and the fits `fit_table` gives."""

from __future__ import annotations

import criteria_world as cw
import numpy as np
import pandas as pd

from criteria.common import ADVANCE_FRAC
from scaling.fitting import fit_table


def replicate(
    k: int, jitter: float = 0.02, rl_kl_max: float = cw.RL_KL_MAX, kl_coefs=(0.0,), val_acc=None, rl_steps=21
) -> tuple:
    """(points, proxies) of replicate k: coefficients times (1 + jitter N(0, 1)), own noise; RL evaluated
    rl_steps times, KL rl_kl_max / 20 apart."""
    rng = np.random.default_rng(100 + k)
    jit = lambda v: [x * (1 + jitter * rng.normal()) for x in v]  # noqa: E731
    ab, bb, br = jit(cw.ALPHA_BON), jit(cw.BETA_BON), jit(cw.BETA_RL)
    ar = [cw.ALPHA_RL[0] * (1 + jitter * rng.normal())] * len(cw.SIZES)
    parts = [cw.bon(s, a, b, rng=rng) for s, a, b in zip(cw.SIZES, ab, bb, strict=True)]
    for c in kl_coefs:
        parts += [
            cw.rl(s, a, b, kl_max=rl_kl_max, rng=rng, kl_coef=c, steps=rl_steps)
            for s, a, b in zip(cw.SIZES, ar, br, strict=True)
        ]
    pts = pd.concat(parts, ignore_index=True)
    pts["kl_exact"] = np.where(pts["method"] == "bon", 0.8 * pts["kl"], np.nan)
    pts["replicate"] = k
    prox = cw.proxies([0.69, 0.6, 0.5, 0.4])
    prox["val_acc"] = val_acc if val_acc is not None else [0.6, 0.7, 0.8, 0.9]
    prox["replicate"] = k
    return pts, prox


def world(ks=(0, 1, 2), **kw) -> tuple:
    """(points, proxies, fits) over replicates ks."""
    got = [replicate(k, **kw) for k in ks]
    pts = pd.concat([g[0] for g in got], ignore_index=True)
    prox = pd.concat([g[1] for g in got], ignore_index=True)
    by = ["method", "rm_params", "data_size", "kl_coef", "objective", "replicate"]
    fits = fit_table(pts, by=by, n_boot=0, d_cut_frac=ADVANCE_FRAC)
    return pts, prox, fits
