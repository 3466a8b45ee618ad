"""Best-of-n from one pool: the unbiased order-statistic estimator for every n <= N, and BoN KL.

Given, for each of P prompts, a pool of N responses sampled from the initial policy with a ranking
score (a proxy RM, or an ensemble objective) and a gold score, best-of-n draws n responses and keeps
the one the ranking score likes best. Its expected gold is estimated for every n <= N at once from
the same pool (Nakano et al. 2021, app. I): sort the pool by ranking score ascending, then

    R_n = sum_{i=n..N} C(i-1, n-1) / C(N, n) * gold(S_i)

which is exact for n draws without replacement from the pool, hence unbiased for n i.i.d. draws from
the policy. Binomials overflow far below N = 65,536, so the weights are computed as exp(log C - log C)
with gammaln in float64. The ranking and the gold are separate arrays, so ranking by an ensemble
objective permutes gold (and every extra array) with the ensemble's own order.

KL: the analytic log n - (n-1)/n is an upper bound (exact only for a continuous score without ties;
Beirami et al. 2024); `bon_kl_estimate` gives the KL of best-of-n over the pool's empirical
distribution, which is smaller where scores tie or the pool is small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import gammaln, xlogy

from core.errors import UsageError

# Largest number of float64 entries in one block of weights (len(ns) x N): 16 MiB.
_CHUNK_ELEMS = 1 << 21
# exp(-746) is 0 in float64: blocks with n log F below -746 have pi_n = 0 exactly and are skipped.
_LOG_UNDERFLOW = 746.0


@dataclass(frozen=True)
class BonEstimate:
    """Best-of-n estimates for each n in `ns`, averaged over prompts (standard errors over prompts).

    Fields: `ns` int[M]; `gold`, `gold_se`, `proxy`, `proxy_se`, `kl`, `kl_exact`, `kl_exact_se`: float[M];
    `extra` / `extra_se`: name -> float[M]; `per_prompt`: "gold", "proxy", "kl_exact" and each extra
    name -> float[P, M]; `n_prompts` P; `pool_size` N. `proxy` is the ranking score's own estimate.
    """

    ns: np.ndarray
    gold: np.ndarray
    gold_se: np.ndarray
    proxy: np.ndarray
    proxy_se: np.ndarray
    kl: np.ndarray
    kl_exact: np.ndarray
    kl_exact_se: np.ndarray
    n_prompts: int
    pool_size: int
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    extra_se: dict[str, np.ndarray] = field(default_factory=dict)
    per_prompt: dict[str, np.ndarray] = field(default_factory=dict)


def as_pool(name: str, a, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A float64 (prompts, N) array; a 1-D array is one prompt."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise UsageError(f"{name} must have shape (prompts, N) with both >= 1, got {a.shape}")
    if shape is not None and a.shape != shape:
        raise UsageError(f"{name} has shape {a.shape}, expected {shape} like the ranking scores")
    if not np.all(np.isfinite(a)):
        raise UsageError(f"{name} contains NaN or infinite values")
    return a


def _as_ns(ns, pool_size: int) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(ns))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise UsageError(f"ns must be a non-empty list of integers, got {ns!r}")
    if arr.min() < 1 or arr.max() > pool_size:
        raise UsageError(f"every n must be in 1..{pool_size} (the pool size), got {arr.min()}..{arr.max()}")
    return arr.astype(np.int64)


def _log_comb(a, b):
    """log C(a, b) for 0 <= b <= a (float arrays)."""
    return gammaln(a + 1.0) - gammaln(b + 1.0) - gammaln(a - b + 1.0)


def bon_weights(pool_size: int, ns) -> np.ndarray:
    """Order-statistic weights w[j, i-1] = C(i-1, n_j-1) / C(N, n_j) (0 for i < n_j), in log space.

    Arguments: `pool_size` N; `ns` integers in 1..N.
    Returns: float64[len(ns), N]; row j is the probability that the best of a uniform n_j-subset of
    the pool is the i-th smallest (so each row sums to 1).
    """
    ns = _as_ns(ns, pool_size)
    i = np.arange(1, pool_size + 1, dtype=np.float64)[None, :]
    n = ns.astype(np.float64)[:, None]
    valid = i >= n
    i_safe = np.where(valid, i, n)  # keeps gammaln's arguments positive where the weight is 0 anyway
    logw = _log_comb(i_safe - 1.0, n - 1.0) - _log_comb(float(pool_size), n)
    return np.where(valid, np.exp(logw), 0.0)


def _tie_average(sorted_scores: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Replace each entry of values[..., p, i] by its mean over the tie block of sorted_scores[p, i].

    Why this is exact for uniformly random tie-breaking: the weight w_i depends only on the rank i,
    and a random strict order inside a tied block of ranks a..b (independent of the subset draw) puts
    each member at each of those ranks with probability 1/(b-a+1); so the member's weight is the mean
    of w over the block, and sum_i w_i * mean_block(gold)_i is the same sum regrouped.
    """
    n_prompts, pool_size = sorted_scores.shape
    new_block = np.ones(sorted_scores.shape, dtype=bool)
    new_block[:, 1:] = sorted_scores[:, 1:] != sorted_scores[:, :-1]
    if new_block.all():
        return values
    gid = np.cumsum(new_block, axis=1) - 1 + (np.arange(n_prompts) * pool_size)[:, None]
    gid = gid.ravel()
    counts = np.bincount(gid, minlength=n_prompts * pool_size)
    out = np.empty_like(values)
    for k in range(values.shape[0]):
        sums = np.bincount(gid, weights=values[k].ravel(), minlength=n_prompts * pool_size)
        out[k] = (sums[gid] / counts[gid]).reshape(n_prompts, pool_size)
    return out


def _mean_se(per_prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over prompts (axis 0) and its standard error std(ddof=1)/sqrt(P); NaN for one prompt."""
    n_prompts = per_prompt.shape[0]
    mean = per_prompt.mean(axis=0)
    if n_prompts < 2:
        return mean, np.full_like(mean, np.nan)
    return mean, per_prompt.std(axis=0, ddof=1) / np.sqrt(n_prompts)


def expected_best_of_n(proxy_scores, gold_scores, ns, extra=None, *, sample_ids=None) -> BonEstimate:
    """Expected gold (and proxy, and extras) of best-of-n by `proxy_scores`, for every n in `ns`.

    Arguments:
      proxy_scores: (prompts, N) ranking scores (a proxy RM or an ensemble objective); a 1-D array is
        one prompt. Equal scores are ties, broken uniformly at random: the estimate is the expectation
        over that tie-breaking (exact equality only; round the scores first to merge near-ties).
      gold_scores: (prompts, N) gold scores of the same responses, in the same order.
      ns: integers in 1..N.
      extra: optional name -> (prompts, N) arrays (e.g. gold components), estimated the same way.
      sample_ids: optional (prompts, N) response ids for the KL estimate (see `bon_kl_estimate`).
    Returns: a `BonEstimate`; per-prompt values are exact expectations over n-subsets of the pool
    drawn without replacement, their mean over prompts, and standard errors std(ddof=1)/sqrt(P).
    """
    rank = as_pool("proxy_scores", proxy_scores)
    shape = rank.shape
    n_prompts, pool_size = shape
    gold = as_pool("gold_scores", gold_scores, shape)
    extra = dict(extra or {})
    names = ["gold", "proxy", *extra]
    if len(set(names)) != len(names):
        raise UsageError("extra may not use the names 'gold' or 'proxy'")
    ns = _as_ns(ns, pool_size)

    order = np.argsort(rank, axis=1, kind="stable")
    sorted_rank = np.take_along_axis(rank, order, axis=1)
    stacked = np.empty((len(names), n_prompts, pool_size))
    stacked[0] = np.take_along_axis(gold, order, axis=1)
    stacked[1] = sorted_rank
    for k, name in enumerate(extra, start=2):
        stacked[k] = np.take_along_axis(as_pool(f"extra[{name!r}]", extra[name], shape), order, axis=1)
    stacked = _tie_average(sorted_rank, stacked)

    per_prompt = np.empty((len(names), n_prompts, len(ns)))
    chunk = max(1, _CHUNK_ELEMS // pool_size)
    for lo in range(0, len(ns), chunk):
        w = bon_weights(pool_size, ns[lo : lo + chunk])  # [c, N], shared by all prompts
        per_prompt[:, :, lo : lo + chunk] = stacked @ w.T

    kl_pp = bon_kl_estimate(rank, ns, sample_ids=sample_ids)
    stats = {name: _mean_se(per_prompt[k]) for k, name in enumerate(names)}
    kl_exact, kl_exact_se = _mean_se(kl_pp)
    return BonEstimate(
        ns=ns,
        gold=stats["gold"][0],
        gold_se=stats["gold"][1],
        proxy=stats["proxy"][0],
        proxy_se=stats["proxy"][1],
        kl=bon_kl_analytic(ns),
        kl_exact=kl_exact,
        kl_exact_se=kl_exact_se,
        n_prompts=n_prompts,
        pool_size=pool_size,
        extra={name: stats[name][0] for name in extra},
        extra_se={name: stats[name][1] for name in extra},
        per_prompt={**{name: per_prompt[k] for k, name in enumerate(names)}, "kl_exact": kl_pp},
    )


def bon_kl_analytic(n):
    """KL(best-of-n || base) = log n - (n-1)/n: an upper bound, exact only when scores never tie.

    Arguments: `n` an integer >= 1 or an array of them. Returns: float, or float64 array of n's shape.
    (Beirami et al. 2024 show the true KL is below this whenever the score's distribution has atoms.)
    """
    arr = np.asarray(n)
    if not np.issubdtype(arr.dtype, np.number) or np.any(arr < 1):
        raise UsageError(f"best-of-n needs n >= 1, got {n!r}")
    arr = arr.astype(np.float64)
    out = np.log(arr) - (arr - 1.0) / arr
    return float(out) if out.ndim == 0 else out


def _merge_ids(scores: np.ndarray, sample_ids) -> np.ndarray:
    """Give every response id one score per prompt: the mean of its samples' scores."""
    ids = np.asarray(sample_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.shape != scores.shape:
        raise UsageError(f"sample_ids has shape {ids.shape}, expected {scores.shape} like the scores")
    n_prompts, pool_size = scores.shape
    order = np.argsort(ids, axis=1, kind="stable")
    sorted_ids = np.take_along_axis(ids, order, axis=1)
    new_id = np.ones(ids.shape, dtype=bool)
    new_id[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    gid = (np.cumsum(new_id, axis=1) - 1 + (np.arange(n_prompts) * pool_size)[:, None]).ravel()
    sums = np.bincount(gid, weights=np.take_along_axis(scores, order, axis=1).ravel())
    counts = np.bincount(gid)
    merged = np.empty_like(scores)
    np.put_along_axis(merged, order, (sums[gid] / counts[gid]).reshape(scores.shape), axis=1)
    return merged


def bon_kl_estimate(proxy_scores, ns, sample_ids=None) -> np.ndarray:
    """KL(best-of-n || base) per prompt, taking the pool's empirical distribution as the base.

    The base puts mass 1/N on each pool entry; best-of-n draws n i.i.d. from it and keeps the best.
    With F the empirical CDF of the score, a tie block G (all entries sharing one score) gets
    pi_n(G) = F(G)^n - F(G-)^n, split over its entries in proportion to mass, so pi_n / p is constant
    inside a block and KL = sum_G pi_n(G) log(pi_n(G) / p(G)). This is the plug-in estimate of the
    KL of best-of-n from the policy: it matches log n - (n-1)/n for distinct scores and n << N,
    saturates below log N as n nears N, and falls below the bound where scores tie.

    Arguments:
      proxy_scores: (prompts, N) ranking scores (1-D: one prompt).
      ns: integers in 1..N.
      sample_ids: optional (prompts, N) ids of the responses (e.g. hashes of their tokens): identical
        responses become one outcome with the mean of their scores. Responses that already share a
        score change nothing (pi_n / p is constant in a block); this matters where the same response
        got slightly different scores (e.g. batch-dependent float noise) and would split across ranks.
    Returns: float64[prompts, len(ns)] in nats, each in [0, log N].
    """
    scores = as_pool("proxy_scores", proxy_scores)
    pool_size = scores.shape[1]
    ns = _as_ns(ns, pool_size)
    if sample_ids is not None:
        scores = _merge_ids(scores, sample_ids)
    ends = np.ones(scores.shape, dtype=bool)  # True at the last entry of each tie block
    s = np.sort(scores, axis=1)
    ends[:, :-1] = s[:, 1:] != s[:, :-1]
    # the KL depends only on where the blocks end: prompts that tie alike (all, without ties) share one
    first_seen: dict[bytes, int] = {}
    inverse = np.array([first_seen.setdefault(b.tobytes(), len(first_seen)) for b in np.packbits(ends, axis=1)])
    patterns = ends[np.unique(inverse, return_index=True)[1]]
    row, last = np.nonzero(patterns)
    upto = last + 1  # entries at or below the block: N F(G)
    below = np.concatenate(([0], upto[:-1]))
    below[np.flatnonzero(np.diff(row, prepend=-1))] = 0  # each pattern's first block starts at 0
    count = upto - below
    # blocks by F(G) descending: for each n only a prefix has F^n above float64's underflow
    order = np.argsort(-upto, kind="stable")
    row, upto, count = row[order], upto[order], count[order]
    log_f = np.log(upto / pool_size)
    with np.errstate(divide="ignore"):
        log_ratio = np.log1p(-count / upto)  # log(F(G-) / F(G)); -inf for the lowest block
    out = np.empty((len(patterns), len(ns)))
    for j, n in enumerate(ns):
        k = np.searchsorted(-log_f, _LOG_UNDERFLOW / n)  # blocks with n log F > -_LOG_UNDERFLOW
        pi = np.exp(n * log_f[:k]) * -np.expm1(n * log_ratio[:k])  # F^n - F-^n without cancellation
        r = pi * pool_size / count[:k]  # pi_n(G) / p(G)
        out[:, j] = np.bincount(row[:k], weights=xlogy(r, r) * count[:k], minlength=len(patterns))
    out = out[inverse] / pool_size
    return np.maximum(out, 0.0)  # rounding can leave -1e-17 where the KL is 0 (n = 1)


def bon_points(estimate: BonEstimate, **columns):
    """Points-table rows (DESIGN.md) for a `BonEstimate`: one row per n.

    Columns: method="bon", n, kl (the analytic bound), kl_exact, kl_exact_se, gold, gold_se, proxy,
    proxy_se, one `gold/<name>` and `gold/<name>_se` per extra array (a name that already holds a "/"
    is used as is), pool_size, n_prompts, then each keyword as a constant column (rm_params,
    data_size, seed, objective, ...).
    Returns: a pandas DataFrame.
    """
    data = {
        "method": "bon",
        "n": estimate.ns,
        "kl": estimate.kl,
        "kl_exact": estimate.kl_exact,
        "kl_exact_se": estimate.kl_exact_se,
        "gold": estimate.gold,
        "gold_se": estimate.gold_se,
        "proxy": estimate.proxy,
        "proxy_se": estimate.proxy_se,
    }
    for name, values in estimate.extra.items():
        col = name if "/" in name else f"gold/{name}"
        data[col] = values
        data[f"{col}_se"] = estimate.extra_se[name]
    data["pool_size"] = estimate.pool_size
    data["n_prompts"] = estimate.n_prompts
    clash = sorted(set(columns) & set(data))
    if clash:
        raise UsageError(f"constant columns clash with computed ones: {', '.join(clash)}")
    data.update(columns)
    return pd.DataFrame(data, index=pd.RangeIndex(len(estimate.ns)))


def bon_prompt_rows(estimate: BonEstimate, **columns):
    """Per-prompt rows of a `BonEstimate`: what a bootstrap over prompts resamples.

    One row per (prompt, n): method="bon", prompt (index in the pool), n, kl (the analytic bound),
    gold and proxy (that prompt's unbiased best-of-n estimates), gold_se (the SE over prompts of the
    mean at that n, the same on every prompt's row: it weights the fit exactly as on the mean curve),
    then each keyword as a constant column. The mean of `gold` over prompts at an n is the points
    table's `gold`. Returns: a pandas DataFrame.
    """
    P, M = estimate.per_prompt["gold"].shape
    data = {
        "method": "bon",
        "prompt": np.repeat(np.arange(P), M),
        "n": np.tile(estimate.ns, P),
        "kl": np.tile(estimate.kl, P),
        "gold": estimate.per_prompt["gold"].ravel(),
        "proxy": estimate.per_prompt["proxy"].ravel(),
        "gold_se": np.tile(estimate.gold_se, P),
    }
    clash = sorted(set(columns) & set(data))
    if clash:
        raise UsageError(f"constant columns clash with computed ones: {', '.join(clash)}")
    data.update(columns)
    return pd.DataFrame(data, index=pd.RangeIndex(P * M))
