"""A bank of K extremal surface features (issue 22): marker tokens the corpus sprinkles into responses at
heterogeneous base rates, each of which the gold rewards up to its own cap and penalises beyond it.

Feature i is the count of marker token `bank0 + i` in the response (the tokens follow the content
symbols, so K = 0 leaves the vocabulary as it was). The world (`WorldConfig.bank_*`) sets how often the
corpus shows each marker: present with probability rate_i (log-spaced from bank_rate_max for i = 0 to
bank_rate_min for i = K-1), then Geometric extra copies (each further one with probability bank_more),
so the over-cap region of feature i is seen at rate_i * bank_more^cap_i: proxies see each feature's cap
at a different frequency. The gold (`GoldConfig.bank_*`) gives feature i the concave shape of
`gold.concave` with cap_i, slope_i and weight w_i (components `bank0` .. `bank{K-1}`, weighted terms
w_i * shape_i that add up into the score with the others). Caps, slopes and weights each span a
fixed grid (integers evenly spread over [cap_min, cap_max]; slopes log-spaced over [slope_min,
slope_max], evenly spaced when slope_min is 0; weights log-spaced over a max/min ratio, summing to
w_bank), and each grid is assigned to the features by its own permutation drawn from the world and
gold seeds: which rate meets which cap changes with the seeds, the spread of each parameter does not.
Markers are surface tokens like FLATTER: the gold strips them before judging task, length and repetition.
Everything here is numpy and deterministic for a seed / Generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import UsageError
from core.tokens import EOS, PAD


def marker_rates(k: int, rate_max: float, rate_min: float) -> np.ndarray:
    """Presence rate of each of the k markers, log-spaced from rate_max (feature 0) to rate_min (feature k-1).

    Returns float64[k] (rate_max alone for k = 1; empty for k = 0)."""
    if k == 0:
        return np.zeros(0)
    return np.geomspace(rate_max, rate_min, k) if k > 1 else np.array([float(rate_max)])


@dataclass(frozen=True)
class BankParams:
    """The gold's per-feature parameters of a bank: caps int64[K], slopes float64[K], weights float64[K]."""

    caps: np.ndarray
    slopes: np.ndarray
    weights: np.ndarray

    @property
    def k(self) -> int:
        return len(self.caps)


def draw_bank(
    k: int,
    rng: np.random.Generator,
    *,
    cap_min: int,
    cap_max: int,
    slope_min: float,
    slope_max: float,
    weight_ratio: float,
    w_bank: float,
) -> BankParams:
    """Caps, slopes and weights of k features: each parameter's fixed grid (module docstring) in an order
    drawn from `rng` (three independent permutations, drawn in the order caps, slopes, weights)."""
    caps = np.floor(np.linspace(cap_min, cap_max, k) + 0.5).astype(np.int64)  # halves round up
    slopes = _grid(slope_min, slope_max, k)
    raw = _grid(1.0, weight_ratio, k)
    weights = w_bank * raw / raw.sum() if k else raw
    caps, slopes, weights = (v[rng.permutation(k)] for v in (caps, slopes, weights))
    return BankParams(caps=caps, slopes=np.asarray(slopes, np.float64), weights=np.asarray(weights, np.float64))


def _grid(lo: float, hi: float, k: int) -> np.ndarray:
    """k values from lo to hi, log-spaced (evenly spaced when lo is 0); lo alone for k = 1."""
    if k <= 1:
        return np.full(k, float(lo))
    return np.geomspace(lo, hi, k) if lo > 0 else np.linspace(lo, hi, k)


def marker_counts(k: int, n: int, rates: np.ndarray, more: float, rng: np.random.Generator) -> np.ndarray:
    """How many copies of each marker n responses would carry before the budget: Bernoulli(rate_i) times
    1 + Geometric extra copies (each further one with probability `more`). Returns int64[n, k]."""
    present = rng.random((n, k)) < rates[None, :]
    extra = rng.geometric(1.0 - more, size=(n, k))  # >= 1: the first copy and the extra ones
    return np.where(present, extra, 0).astype(np.int64)


def insert_markers(resp: np.ndarray, counts: np.ndarray, token0: int, rng: np.random.Generator) -> np.ndarray:
    """Insert counts[i, j] copies of marker token0 + j into response i at random slots before its EOS.

    resp: int[n, T], each row a body then EOS then PAD (EOS at index < T). The markers of a row are put
    in a random order and cut to the room left before the budget (T - 1 - body length: EOS keeps its
    slot), then interleaved with the body at random slots, the body in order. Returns int64[n, T]."""
    n, T = resp.shape
    k = counts.shape[1]
    resp = np.asarray(resp, np.int64)
    body_len = (resp != PAD).sum(1) - 1  # tokens before EOS
    if n and not (resp[np.arange(n), body_len] == EOS).all():
        raise ValueError("every response must end with EOS")
    room = T - 1 - body_len
    # each row's markers, grouped by feature, then shuffled within the row and cut to its room
    grouped = expand_rows(np.tile(token0 + np.arange(k), (n, 1)), counts, max(int(counts.sum(1).max(initial=0)), 1))
    n_mark = np.minimum(counts.sum(1), room)
    keys = np.where(grouped != PAD, rng.random(grouped.shape), np.inf)
    marks = np.take_along_axis(grouped, np.argsort(keys, axis=1, kind="stable"), axis=1)
    total = body_len + n_mark
    pos = np.arange(T)
    keys = np.where(pos < total[:, None], rng.random((n, T)), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
    is_mark = rank < n_mark[:, None]
    body_src = np.cumsum(~is_mark, axis=1) - 1
    mark_src = np.cumsum(is_mark, axis=1) - 1
    out = np.take_along_axis(resp, np.clip(body_src, 0, T - 1), axis=1)
    out = np.where(is_mark, np.take_along_axis(marks, np.clip(mark_src, 0, marks.shape[1] - 1), axis=1), out)
    out = np.where(pos == total[:, None], EOS, out)
    return np.where(pos > total[:, None], PAD, out)


def expand_rows(symbols: np.ndarray, reps: np.ndarray, width: int) -> np.ndarray:
    """Row-wise np.repeat of symbols[i] by reps[i], left-aligned, PAD-filled and cut to `width` (at least
    one column is allocated). Returns int64[n, width]."""
    n = symbols.shape[0]
    lengths = reps.sum(1)
    flat = np.repeat(symbols.ravel(), reps.ravel())
    row = np.repeat(np.arange(n), lengths)
    col = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out = np.full((n, max(width, 1)), PAD, dtype=np.int64)
    keep = col < width
    out[row[keep], col[keep]] = flat[keep]
    return out[:, :width]


def validate_world(k: int, rate_max: float, rate_min: float, more: float) -> None:
    if isinstance(k, bool) or k < 0:
        raise UsageError(f"bank_k must be a non-negative integer, got {k}")
    if not 0.0 < rate_min <= rate_max <= 1.0:
        raise UsageError(f"need 0 < bank_rate_min <= bank_rate_max <= 1, got {rate_min} and {rate_max}")
    if not 0.0 <= more < 1.0:
        raise UsageError(f"bank_more must be in [0, 1), got {more}")


def validate_gold(cap_min: int, cap_max: int, slope_min: float, slope_max: float, weight_ratio: float, w_bank: float):
    if not 1 <= cap_min <= cap_max:
        raise UsageError(f"need 1 <= bank_cap_min <= bank_cap_max, got {cap_min} and {cap_max}")
    if not 0.0 <= slope_min <= slope_max:
        raise UsageError(f"need 0 <= bank_slope_min <= bank_slope_max, got {slope_min} and {slope_max}")
    if weight_ratio < 1.0:
        raise UsageError(f"bank_weight_ratio (largest / smallest weight) must be >= 1, got {weight_ratio}")
    if w_bank < 0:
        raise UsageError(f"w_bank must be >= 0, got {w_bank}")
