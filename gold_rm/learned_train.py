"""Training the learned gold (`gold_rm.learned.LearnedGold`) and measuring its agreement with the formula.

Data: pairs of responses to fresh prompts, each side drawn independently from three sources: the initial
policy's samples (temperature 1, probability 1 - hot_frac - perturb_frac), hotter samples (hot_temperature,
hot_frac) and initial samples edited 1 .. max_edits times (`gold_rm.perturb`, perturb_frac). Labels: the
formula gold's preference (`gold_rm.labels.label_pairs` on its scores: hard or Bradley-Terry, then flipped
with probability flip_frac). A fraction val_frac of the pairs is held out.

Agreement (`agreement`): the fraction of pairs the learned gold orders as the formula does (noise-free),
pairs the formula ties (|difference| < 1e-6) left out. Measured on the held-out pairs and on three
off-distribution sets of fresh prompts (`OFF_DISTRIBUTION`):
  hotter         both sides sampled at twice hot_temperature,
  stacked_edits  initial samples edited max_edits + 2 .. max_edits + 4 times (more than in training),
  top_of_pool    per prompt, the formula's best of 64 initial samples against each of the next 8: the
                 comparisons best-of-n at large n makes.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from gold_rm.gold import GoldRM
from gold_rm.labels import label_pairs
from gold_rm.learned import LearnedGold
from gold_rm.learned_config import LearnedGoldConfig
from gold_rm.perturb import perturb
from lm.model import ModelConfig
from lm.reward_train import Comparisons, train_ensemble
from lm.sampling import sample_many

OFF_DISTRIBUTION = ("hotter", "stacked_edits", "top_of_pool")
_DATA, _EVAL, _INIT = 221, 222, 223  # seed-sequence streams of GoldConfig.seed
TIE = 1e-6


def _sample(world, policy, prompts, seed: int, n: int, temperature: float):
    s = sample_many(
        *policy, prompts, jax.random.PRNGKey(seed), n, max_new=world.max_new, temperature=temperature, batch_size=4096
    )
    return s.tokens, s.mask


def _edit(world, tokens, mask, n_edits, rng):
    return perturb(
        tokens, mask, prompt_len=world.prompt_len, k=world.k, n_symbols=world.n_symbols, n_edits=n_edits, rng=rng
    )


def training_pairs(world, policy, c: LearnedGoldConfig, seed: int) -> tuple[dict, np.ndarray]:
    """Pairs of the training distribution: ({tokens_a, mask_a, tokens_b, mask_b}, source int8[N, 2] with
    0 initial, 1 hot, 2 edited). `policy` = (graphdef, state) of the initial policy."""
    rng = np.random.default_rng([seed, _DATA])
    n = c.n_pairs
    prompts = world.sample_prompts(rng, n)
    init_t, init_m = _sample(world, policy, prompts, int(rng.integers(2**31)), 2, 1.0)
    hot_t, hot_m = _sample(world, policy, prompts, int(rng.integers(2**31)), 2, c.hot_temperature)
    source = rng.choice(3, size=(n, 2), p=[1 - c.hot_frac - c.perturb_frac, c.hot_frac, c.perturb_frac])
    out = {}
    for j, side in enumerate("ab"):
        t, m = init_t[j::2].copy(), init_m[j::2].copy()
        hot = source[:, j] == 1
        t[hot], m[hot] = hot_t[j::2][hot], hot_m[j::2][hot]
        n_edits = np.where(source[:, j] == 2, rng.integers(1, c.max_edits + 1, size=n), 0)
        out[f"tokens_{side}"], out[f"mask_{side}"] = _edit(world, t, m, n_edits, rng)
    return out, source.astype(np.int8)


def off_distribution_pairs(world, formula: GoldRM, policy, c: LearnedGoldConfig, seed: int) -> dict:
    """name (OFF_DISTRIBUTION) -> {tokens_a, mask_a, tokens_b, mask_b}, each of about c.eval_pairs pairs."""
    rng = np.random.default_rng([seed, _EVAL])
    n = c.eval_pairs
    out = {}
    t, m = _sample(world, policy, world.sample_prompts(rng, n), int(rng.integers(2**31)), 2, 2 * c.hot_temperature)
    out["hotter"] = {"tokens_a": t[0::2], "mask_a": m[0::2], "tokens_b": t[1::2], "mask_b": m[1::2]}
    t, m = _sample(world, policy, world.sample_prompts(rng, n), int(rng.integers(2**31)), 2, 1.0)
    edits = rng.integers(c.max_edits + 2, c.max_edits + 5, size=2 * n)
    t, m = _edit(world, t, m, edits, rng)
    out["stacked_edits"] = {"tokens_a": t[0::2], "mask_a": m[0::2], "tokens_b": t[1::2], "mask_b": m[1::2]}
    n_prompts, per, top = max(1, -(-n // 8)), 64, 8
    t, m = _sample(world, policy, world.sample_prompts(rng, n_prompts), int(rng.integers(2**31)), per, 1.0)
    g = np.asarray(formula.score(t, m), np.float64).reshape(n_prompts, per)
    order = np.argsort(-g, axis=1, kind="stable")
    rows = np.arange(n_prompts)[:, None] * per
    best, rest = (rows + order[:, :1]).repeat(top, axis=1).ravel(), (rows + order[:, 1 : top + 1]).ravel()
    out["top_of_pool"] = {"tokens_a": t[best], "mask_a": m[best], "tokens_b": t[rest], "mask_b": m[rest]}
    return out


def agreement(gold, formula: GoldRM, pairs: dict) -> dict:
    """How often `gold` orders the pairs as the formula does: {agreement, n (pairs judged), ties (the formula's,
    left out), corr (Pearson of the two scores over every response)}."""
    fa = np.asarray(formula.score(pairs["tokens_a"], pairs["mask_a"]), np.float64)
    fb = np.asarray(formula.score(pairs["tokens_b"], pairs["mask_b"]), np.float64)
    la = np.asarray(gold.score(pairs["tokens_a"], pairs["mask_a"]), np.float64)
    lb = np.asarray(gold.score(pairs["tokens_b"], pairs["mask_b"]), np.float64)
    judged = np.abs(fa - fb) >= TIE
    agree = np.sign(la - lb)[judged] == np.sign(fa - fb)[judged]
    f, lg = np.concatenate([fa, fb]), np.concatenate([la, lb])
    corr = float(np.corrcoef(f, lg)[0, 1]) if f.std() > 0 and lg.std() > 0 else None
    return {
        "agreement": float(agree.mean()) if agree.size else None,
        "n": int(judged.sum()),
        "ties": int((~judged).sum()),
        "corr": corr,
    }


def train_learned_gold(world, formula: GoldRM, policy, c: LearnedGoldConfig, seed: int) -> tuple[LearnedGold, dict]:
    """Train, calibrate and measure a learned gold. `policy` = (graphdef, state) of the initial policy; `seed`
    = GoldConfig.seed. Returns (the frozen LearnedGold, the report gold.json holds)."""
    t0 = time.time()
    pairs, source = training_pairs(world, policy, c, seed)
    rng = np.random.default_rng([seed, _DATA, 1])
    ga = np.asarray(formula.score(pairs["tokens_a"], pairs["mask_a"]), np.float64)
    gb = np.asarray(formula.score(pairs["tokens_b"], pairs["mask_b"]), np.float64)
    label = label_pairs(ga, gb, mode=c.label_mode, temperature=c.temperature, flip_frac=c.flip_frac, rng=rng)
    comps = Comparisons(**pairs, label=label, prompt_len=world.prompt_len)
    perm = np.random.default_rng([seed, _DATA, 2]).permutation(c.n_pairs)
    n_val = max(1, int(round(c.val_frac * c.n_pairs)))
    train, val = comps.take(np.sort(perm[n_val:])), comps.take(np.sort(perm[:n_val]))
    t_data = time.time() - t0
    mcfg = ModelConfig(world.vocab_size, world.seq_len, c.n_layer, c.d_model, c.n_head)
    graphdef, states, history = train_ensemble(
        mcfg, c, train, val, [int(np.random.SeedSequence([seed, _INIT]).generate_state(1)[0] % 2**31)]
    )
    t_train = time.time() - t0 - t_data
    gold = LearnedGold(formula, mcfg, graphdef, states, 1.0, 0.0, c.pool)
    # the formula's scale: least squares of the formula's score on the raw scalar over the training responses
    tr = {k: np.concatenate([getattr(train, f"{k}_a"), getattr(train, f"{k}_b")]) for k in ("tokens", "mask")}
    r = np.asarray(gold.raw(tr["tokens"], tr["mask"]), np.float64)
    f = np.concatenate([ga[np.sort(perm[n_val:])], gb[np.sort(perm[n_val:])]])
    scale = float(np.cov(r, f)[0, 1] / np.var(r, ddof=1))
    gold = LearnedGold(formula, mcfg, graphdef, states, scale, float(f.mean() - scale * r.mean()), c.pool)
    held = {k: getattr(val, k) for k in ("tokens_a", "mask_a", "tokens_b", "mask_b")}
    off = off_distribution_pairs(world, formula, policy, c, seed)
    noiseless = np.sign(ga - gb)
    report = {
        "kind": "learned",
        "params": gold.params,
        "model": {"n_layer": c.n_layer, "d_model": c.d_model, "n_head": c.n_head},
        "n_train": len(train),
        "n_heldout": len(val),
        "label_noise": {"mode": c.label_mode, "temperature": c.temperature, "flip_frac": c.flip_frac},
        "labels_agree_with_formula": float(np.mean((label == 1)[noiseless != 0] == (noiseless[noiseless != 0] > 0))),
        "sources": {name: float(np.mean(source == i)) for i, name in enumerate(("initial", "hot", "edited"))},
        "scale": gold.scale,
        "offset": gold.offset,
        "val_acc_noisy_labels": history[-1]["val/acc"][0],
        "heldout": agreement(gold, formula, held),
        "off_distribution": {name: agreement(gold, formula, p) for name, p in off.items()},
        "history": history,
        "seconds": {"data": t_data, "train": t_train, "total": time.time() - t0},
    }
    return gold, report
