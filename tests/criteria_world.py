"""Synthetic proxy ladders with known answers for the criteria tests (tests/test_criteria*.py).

The ideal ladder meets every claim of Gao et al. by construction: best-of-n d (alpha - beta d) with
alpha rising and beta falling with size, d* = alpha / (2 beta) = 1.25 / 2.14 / 2.92 / 4.0 (KL up to
8.7); RL d (alpha - beta log d) to KL 40 (d 6.3) with one alpha (0.04) and beta falling, d* = exp(alpha /
beta - 1) = 1.95 / 3.39 / 4.48 / 6.4 (RL peaks at more KL than best-of-n, and lower: best-of-n is ahead
at matched KL).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SIZES = [1e3, 1e4, 1e5, 1e6]
ALPHA_BON = [0.55, 0.60, 0.70, 0.80]
BETA_BON = [0.22, 0.14, 0.12, 0.10]
ALPHA_RL = [0.04, 0.04, 0.04, 0.04]
BETA_RL = [0.024, 0.018, 0.016, 0.014]
RL_KL_MAX = 40.0
FULL = 18000
NS = 2 ** np.arange(0, 15)


def bon_kl(ns):
    return np.log(ns) - (ns - 1) / ns


def bon(size, a, b, data_size=FULL, se=0.01, rng=None):
    kl = bon_kl(NS)
    d = np.sqrt(kl)
    gold = d * (a - b * d)
    if rng is not None:
        gold = gold + rng.normal(0, se, len(NS))
    return pd.DataFrame(
        {
            "method": "bon",
            "n": NS,
            "kl": kl,
            "gold": gold,
            "gold_se": se,
            "rm_params": size,
            "data_size": data_size,
            "objective": "single",
        }
    )


def bon_prompts(size, a, b, n_prompts=40, sd=0.2, rng=None, data_size=FULL):
    """Per-prompt best-of-n rows: the law plus a prompt effect and noise (one row a prompt and n)."""
    rng = rng or np.random.default_rng(0)
    kl = bon_kl(NS)
    d = np.sqrt(kl)
    effect = rng.normal(0, sd, n_prompts)
    rows = []
    for p in range(n_prompts):
        gold = d * (a - b * d) + effect[p] * d + rng.normal(0, sd, len(NS))
        rows.append(
            pd.DataFrame(
                {"method": "bon", "prompt": p, "n": NS, "kl": kl, "gold": gold, "rm_params": size}
                | {"data_size": data_size, "objective": "single"}
            )
        )
    return pd.concat(rows, ignore_index=True)


def rl(size, a, b, seeds=(0, 1, 2), kl_max=RL_KL_MAX, rng=None, kl_coef=0.0, noise=0.003, steps=21, shift=0.0):
    rows = []
    for s in seeds:
        for step in range(steps):
            kl = kl_max * step / 20
            d = math.sqrt(kl)
            gold = 0.0 if d == 0 else d * (a - b * math.log(d)) + shift
            gold += 0.0 if rng is None else float(rng.normal(0, noise))
            rows.append(
                {
                    "method": "rl",
                    "step": step * 10,
                    "kl": kl,
                    "gold": gold,
                    "kl_coef": kl_coef,
                    "seed": s,
                    "rm_params": size,
                    "data_size": FULL,
                    "objective": "single",
                }
            )
    return pd.DataFrame(rows)


def world(seeds=(0, 1, 2), rl_kl_max=RL_KL_MAX, extra=(), sizes=SIZES, alpha_bon=ALPHA_BON, beta_bon=BETA_BON):
    rng = np.random.default_rng(0)
    parts = [bon(s, a, b, rng=rng) for s, a, b in zip(sizes, alpha_bon, beta_bon, strict=True)]
    parts += [rl(s, a, b, seeds, rl_kl_max, rng) for s, a, b in zip(SIZES, ALPHA_RL, BETA_RL, strict=True)]
    return pd.concat(parts + list(extra), ignore_index=True)


def proxies(losses, sizes=SIZES, data_size=FULL):
    return pd.DataFrame({"rm_params": sizes, "data_size": data_size, "val_loss": losses, "member": 0})


def by_name(checks):
    return {c["check"]: c for c in checks}
