"""Best-of-n pools: N responses per prompt from the initial policy, gold-scored once, stored.

A pool is sampled and gold-scored once per (policy, world, gold, pool settings) and saved as a
compressed .npz, so proxies trained later are scored against the very same responses without
re-sampling. `bon_points_for_proxy` ranks the pool by one proxy member (objective "single") and by
every ensemble objective, and turns each ranking into points rows with the estimator of
`bon.estimator` (the gold arrays are permuted by each ranking's own order inside the estimator).
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bon.estimator import bon_points, bon_prompt_rows, expected_best_of_n
from bon.kl_estimators import kl_beirami_pool
from core.store import atomic_write_bytes


@dataclass(frozen=True)
class BonConfig:
    """Best-of-n pool and estimator settings."""

    n_prompts: int = 32
    """prompts in the pool (standard errors are over prompts)."""
    pool_size: int = 1024
    """N responses per prompt; the estimator gives every n <= N."""
    temperature: float = 1.0
    """sampling temperature of the initial policy."""
    batch_size: int = 4096
    """responses sampled per compiled chunk (bounds memory)."""
    objectives: tuple[str, ...] = ("mean", "min", "median", "uwo")
    """ensemble objectives compared against a single proxy (used when the ensemble has >1 member)."""
    uwo_lambda: float = 1.0
    """lambda of the uncertainty-weighted objective mean - lambda * var."""
    seed: int = 1
    """seeds the pool's prompts and samples."""


def n_grid(pool_size: int) -> np.ndarray:
    """The n at which points are reported: 1, 2, 3, 4, 6, 8, 11, 16, ... (about 2 per octave) and N."""
    ks = np.unique(np.round(2.0 ** (np.arange(0, 2 * np.log2(pool_size) + 1) / 2)).astype(int))
    return np.unique(np.append(ks[ks <= pool_size], pool_size))


@dataclass
class Pool:
    """Sampled responses and their gold components, prompt-major: row i*N + j is prompt i's j-th."""

    tokens: np.ndarray  # uint8/int32 [P*N, S]
    mask: np.ndarray  # bool [P*N, T]
    gold: dict  # component name -> float32 [P*N]; "score" is the total
    prompt_len: int
    n_prompts: int
    pool_size: int
    ref_logprob: np.ndarray | None = None  # float64 [P*N]: log pi_init(response | prompt) at the pool's temperature

    def per_prompt(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x).reshape(self.n_prompts, self.pool_size)

    def sample_ids(self) -> np.ndarray:
        """Ids of distinct responses within each prompt ([P, N]), for the sample-based KL estimate."""
        rows = np.ascontiguousarray(self.tokens[:, self.prompt_len :])
        void = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
        _, inv = np.unique(void, return_inverse=True)
        return inv.reshape(self.n_prompts, self.pool_size)


def recentred(pool: Pool) -> Pool:
    """The pool with every gold term shifted so that the initial policy's mean (over the pool) is 0."""
    return dataclasses.replace(pool, gold={k: v - np.mean(v, dtype=np.float64) for k, v in pool.gold.items()})


def make_pool(world, gold_rm, graphdef, state, cfg: BonConfig, progress: bool = True) -> Pool:
    """Sample cfg.pool_size responses for cfg.n_prompts fresh prompts and gold-score them all."""
    import jax  # imports JAX here: `overopt bon` reads this module (n_grid) and never samples

    from lm.sampling import sample_many  # JAX, as above

    rng = np.random.default_rng([cfg.seed, 7])
    prompts = world.sample_prompts(rng, cfg.n_prompts)
    s = sample_many(
        graphdef,
        state,
        prompts,
        jax.random.PRNGKey(cfg.seed),
        cfg.pool_size,
        max_new=world.max_new,
        temperature=cfg.temperature,
        batch_size=min(cfg.batch_size, cfg.n_prompts * cfg.pool_size),
        progress=progress,
    )
    gold = gold_components(gold_rm, s.tokens, s.mask, cfg.batch_size)
    dtype = np.uint8 if world.vocab_size <= 256 else np.int32
    # the sampler's own log-prob of each drawn token (at the sampling temperature), summed over the response:
    # what a teacher-forced pass of pi_init would give, to fp32 rounding (tests/test_pools.py)
    ref_logprob = np.where(s.mask, s.logprobs, 0.0).sum(axis=1, dtype=np.float64)
    return Pool(s.tokens.astype(dtype), s.mask, gold, world.prompt_len, cfg.n_prompts, cfg.pool_size, ref_logprob)


def gold_components(gold_rm, tokens, mask, batch_size: int = 8192) -> dict:
    """Gold score and each component's weighted term (`GoldRM.terms`: they add up to the score), in chunks.

    Returns: name -> float32[N]; "score" is the total, every other name a term w_c * component_c.
    """
    parts: dict[str, list] = {}
    for i in range(0, len(tokens), batch_size):
        terms = gold_rm.terms(np.asarray(tokens[i : i + batch_size], np.int32), mask[i : i + batch_size])
        for k, v in terms.items():
            parts.setdefault(k, []).append(np.asarray(v, np.float32))
    return {k: np.concatenate(v) for k, v in parts.items()}


def save_pool(path: str | Path, pool: Pool) -> None:
    buf = io.BytesIO()
    arrays = {f"gold__{k}": v for k, v in pool.gold.items()}
    if pool.ref_logprob is not None:
        arrays["ref_logprob"] = pool.ref_logprob
    np.savez_compressed(
        buf,
        tokens=pool.tokens,
        mask=pool.mask,
        meta=np.array([pool.prompt_len, pool.n_prompts, pool.pool_size]),
        **arrays,
    )
    atomic_write_bytes(path, buf.getvalue())


def load_pool(path: str | Path) -> Pool:
    with np.load(path) as z:
        gold = {k[len("gold__") :]: z[k] for k in z.files if k.startswith("gold__")}
        P, n_prompts, N = (int(x) for x in z["meta"])
        ref = z["ref_logprob"] if "ref_logprob" in z.files else None
        return Pool(z["tokens"], z["mask"], gold, P, n_prompts, N, ref)


def rankings(member_scores: np.ndarray, cfg: BonConfig) -> dict:
    """Each ranking of a pool: "single" (member 0) and, for an ensemble (k > 1), each of `cfg.objectives`
    (`proxy_rm.ensemble.objective`, uwo with `cfg.uwo_lambda`). member_scores: float[k, ...]."""
    from proxy_rm.ensemble import objective  # imports JAX: only for an ensemble

    out = {"single": member_scores[0]}
    if member_scores.shape[0] > 1:
        for name in cfg.objectives:
            out[name] = objective(name, np.asarray(member_scores, np.float64), lam=cfg.uwo_lambda)
    return out


def bon_points_for_proxy(
    pool: Pool, member_scores: np.ndarray, cfg: BonConfig, *, with_prompts: bool = False, **columns
):
    """Points rows for one proxy (an ensemble of k members) on a pool.

    Arguments:
      member_scores: float[k, P*N] recentred scores of every member on the pool.
      with_prompts: also return the per-prompt rows (`bon.estimator.bon_prompt_rows`).
      columns: constant columns (rm_params, rm_name, data_size, seed, ...).
    Returns: DataFrame with objective "single" (member 0) and, when k > 1, each ensemble objective
    (`bon.estimator.bon_points`' columns and `kl_beirami`, Beirami et al.'s estimator with eps each
    response's share of the pool, averaged over prompts, after `kl_exact_se`); with `with_prompts`,
    (that DataFrame, the per-prompt DataFrame).
    """
    ns = n_grid(pool.pool_size)
    gold = pool.per_prompt(pool.gold["score"])
    extra = {k: pool.per_prompt(v) for k, v in pool.gold.items() if k != "score"}
    ids = pool.sample_ids()
    k = member_scores.shape[0]
    frames, prompts = [], []
    for name, rank in rankings(member_scores, cfg).items():
        rank_pp = pool.per_prompt(rank)
        est = expected_best_of_n(rank_pp, gold, ns, extra=extra, sample_ids=ids)
        const = {"objective": name, "ensemble_size": 1 if name == "single" else k, **columns}
        pts = bon_points(est, **const)
        beirami = kl_beirami_pool(rank_pp, ns, sample_ids=ids)  # eps: each response's share of the pool
        pts.insert(pts.columns.get_loc("kl_exact_se") + 1, "kl_beirami", beirami.mean(axis=0))
        frames.append(pts)
        if with_prompts:
            prompts.append(bon_prompt_rows(est, **const))
    points = pd.concat(frames, ignore_index=True)
    return (points, pd.concat(prompts, ignore_index=True)) if with_prompts else points
