"""Gold labels for response pairs and the comparisons dataset the proxy reward models train on.

Modes (label 1: response a is preferred):
  hard  higher gold wins (Gao et al. 2022); exact ties are broken by a fair coin.
  bt    sampled from Bradley-Terry: P(a preferred) = sigmoid((gold_a - gold_b) / temperature).
Then each label is flipped independently with probability `flip_frac` (Coste et al. 2023 use 0.25).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import UsageError
from core.store import atomic_write_parquet

MODES = ("hard", "bt")


def preference_prob(gold_a, gold_b, *, mode: str = "hard", temperature: float = 1.0) -> np.ndarray:
    """P(a preferred) before flipping: 1/0/0.5 (hard) or sigmoid((a - b) / temperature) (bt). float64[N]."""
    a, b = _scores(gold_a, gold_b)
    if mode == "hard":
        return np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5))
    if mode == "bt":
        if not (np.isfinite(temperature) and temperature > 0):
            raise UsageError(f"temperature must be a positive number, got {temperature}")
        z = (a - b) / temperature
        return np.exp(-np.logaddexp(0.0, -z))  # stable sigmoid
    raise UsageError(f"label mode must be one of {list(MODES)}, got {mode!r}")


def label_pairs(
    gold_a, gold_b, *, mode: str = "hard", temperature: float = 1.0, flip_frac: float = 0.0, rng: np.random.Generator
) -> np.ndarray:
    """Labels of N pairs from their gold scores.

    Arguments: gold_a, gold_b: float[N]; mode "hard" | "bt"; temperature (bt only); flip_frac in [0, 1]:
    probability that each label is flipped; rng: the source of ties, BT draws and flips.
    Returns int8[N]: 1 if a is preferred, else 0.
    """
    if not 0.0 <= flip_frac <= 1.0:
        raise UsageError(f"flip_frac must be in [0, 1], got {flip_frac}")
    p = preference_prob(gold_a, gold_b, mode=mode, temperature=temperature)
    label = rng.random(p.shape) < p
    flip = rng.random(p.shape) < flip_frac
    return (label ^ flip).astype(np.int8)


def make_comparisons(
    gold,
    tokens_a,
    mask_a,
    tokens_b,
    mask_b,
    *,
    prompt_len: int,
    prompt_id=None,
    mode: str = "hard",
    temperature: float = 1.0,
    flip_frac: float = 0.0,
    rng: np.random.Generator,
    batch_size: int = 4096,
) -> pd.DataFrame:
    """Score two responses per prompt with a gold scorer and label them.

    Arguments: gold: anything with `components(tokens, response_mask) -> dict` holding "score" (a GoldRM,
    or a TorchGoldRM); tokens_a/b int32[N, P+T] sharing their prompts; mask_a/b bool[N, T];
    prompt_len P; prompt_id int[N] (default: index of each distinct prompt in order of appearance);
    labelling options as in `label_pairs`; batch_size: rows scored at once.
    Returns a DataFrame with one row per pair: prompt_id, tokens_a, mask_a, tokens_b, mask_b (lists),
    gold_a, gold_b, "gold_a/<component>", "gold_b/<component>", p_a (P(a preferred) before
    flipping), label (int8, 1: a preferred).
    """
    tokens_a, tokens_b = np.asarray(tokens_a, np.int32), np.asarray(tokens_b, np.int32)
    mask_a, mask_b = np.asarray(mask_a, bool), np.asarray(mask_b, bool)
    n = tokens_a.shape[0]
    if tokens_a.shape != tokens_b.shape or mask_a.shape != mask_b.shape or mask_a.shape[0] != n:
        shapes = [x.shape for x in (tokens_a, tokens_b, mask_a, mask_b)]
        raise UsageError(f"pair arrays disagree in shape: {shapes}")
    if n == 0:
        raise UsageError("no pairs to compare")
    if not np.array_equal(tokens_a[:, :prompt_len], tokens_b[:, :prompt_len]):
        raise UsageError("the two responses of a pair must share their prompt")
    if batch_size < 1:
        raise UsageError(f"batch_size must be positive, got {batch_size}")
    if prompt_id is None:
        prompts = tokens_a[:, :prompt_len]
        _, first, inverse = np.unique(prompts, axis=0, return_index=True, return_inverse=True)
        prompt_id = np.argsort(np.argsort(first))[inverse.ravel()]  # number prompts by first appearance
    prompt_id = np.asarray(prompt_id, np.int64)
    if prompt_id.shape != (n,):
        raise UsageError(f"prompt_id must have shape ({n},), got {prompt_id.shape}")
    comps_a = _batched_components(gold, tokens_a, mask_a, batch_size)
    comps_b = _batched_components(gold, tokens_b, mask_b, batch_size)
    p = preference_prob(comps_a["score"], comps_b["score"], mode=mode, temperature=temperature)
    label = label_pairs(
        comps_a["score"], comps_b["score"], mode=mode, temperature=temperature, flip_frac=flip_frac, rng=rng
    )
    cols = {
        "prompt_id": prompt_id,
        "tokens_a": list(tokens_a),
        "mask_a": list(mask_a),
        "tokens_b": list(tokens_b),
        "mask_b": list(mask_b),
        "gold_a": comps_a["score"],
        "gold_b": comps_b["score"],
    }
    for side, comps in (("a", comps_a), ("b", comps_b)):
        cols.update({f"gold_{side}/{name}": v for name, v in comps.items() if name != "score"})
    cols["p_a"] = p
    cols["label"] = label
    return pd.DataFrame(cols)


def write_comparisons(path, df: pd.DataFrame) -> None:
    """Write a comparisons DataFrame as Parquet, atomically."""
    atomic_write_parquet(path, df)


def read_comparisons(path) -> pd.DataFrame:
    """Read a comparisons Parquet file written by `write_comparisons`."""
    return pd.read_parquet(path)


def comparison_arrays(df: pd.DataFrame) -> dict:
    """The training arrays of a comparisons DataFrame: tokens_a, mask_a, tokens_b, mask_b, label."""
    return {
        "tokens_a": np.stack(df["tokens_a"].to_numpy()).astype(np.int32),
        "mask_a": np.stack(df["mask_a"].to_numpy()).astype(bool),
        "tokens_b": np.stack(df["tokens_b"].to_numpy()).astype(np.int32),
        "mask_b": np.stack(df["mask_b"].to_numpy()).astype(bool),
        "label": df["label"].to_numpy().astype(np.int8),
    }


def _batched_components(gold, tokens, mask, batch_size) -> dict:
    n = tokens.shape[0]
    parts: dict[str, list] = {}
    for i in range(0, n, batch_size):
        # a short last batch repeats rows so every call has one shape (no recompilation)
        idx = np.minimum(np.arange(i, i + batch_size), n - 1) if n >= batch_size else np.arange(n)
        comps = gold.components(tokens[idx], mask[idx])
        if "score" not in comps:
            raise UsageError("the gold scorer's components() must include 'score'")
        for name, v in comps.items():
            parts.setdefault(name, []).append(np.asarray(v, np.float64)[: min(batch_size, n - i)])
    return {name: np.concatenate(v) for name, v in parts.items()}


def _scores(gold_a, gold_b):
    a, b = np.asarray(gold_a, np.float64), np.asarray(gold_b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise UsageError(f"gold_a and gold_b must be 1-D arrays of one length, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise UsageError("gold scores must be finite")
    return a, b
