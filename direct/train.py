"""Direct alignment (DPO, IPO, SLiC) on gold-labelled comparisons: a grid of (beta, seed) points trained in
one compiled program (vmapped over the grid), evaluated on fresh samples at `config.eval_steps`.

Each update takes `batch_size` comparisons (a grid point's own shuffle of the training pairs per epoch, from
its seed), their sequence log-probabilities under the policy and under the frozen reference (the initial
policy, computed once), and one Adam step on the mean pair loss (`direct.losses`). An evaluation samples
`eval_batch` fresh responses from the policy and reports, per sequence, the log-ratio
l = sum_t (log pi - log ref) (the k1 estimate of KL(pi || ref); its mean and standard error) and the k3
estimate sum_t (r - 1 - log r) with r = ref / pi (mean and SE), the gold score (mean and SE), the proxy
RM's score, and the implicit reward beta * l. Points rows (DESIGN.md's table) carry method "rl", algo (the
loss), beta_dpo (= kl_coef: one curve per beta), step, epoch (updates / updates per epoch, fractional within
an epoch) and the training loss of the updates since the previous evaluation."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from flax import nnx

from core.errors import UsageError
from direct.config import DHyper, DirectConfig, DStatic, eval_steps
from direct.losses import margin, pair_loss
from lm import model as gpt
from lm.sampling import sample_traced
from lm.scorer import Scorer

__all__ = ["DirectFns", "make_direct", "points_from_rows", "sequence_logps", "train_direct"]


def _tx(h: DHyper):
    return optax.chain(optax.clip_by_global_norm(h.grad_clip), optax.adam(h.lr, eps=h.adam_eps))


def sequence_logps(graphdef, params, tokens, mask, prompt_len: int, temperature):
    """Sum over the response tokens of log p(token | prefix): f32[B]."""
    lp = gpt.response_logprobs_traced(graphdef, params, tokens, prompt_len, temperature)
    return jnp.sum(jnp.where(mask, lp, 0.0), axis=1)


class DirectFns:
    """The jitted programs of one (policy graphdef, reward fn, gold fn, static config, prompt length)."""

    def __init__(self, init, step, evaluate, ref, fast_compile):
        opts = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
        jit = lambda f, **kw: jax.jit(f, compiler_options=opts if fast_compile else None, **kw)
        self.ref = jit(ref)  # (ref_state, tokens, mask) -> f32[B]
        self.init_grid = jit(jax.vmap(init, in_axes=(None, 0)))  # (policy_state, hyper) -> (params, opt)[G]
        self.step = jit(step, donate_argnums=0)  # ((params, opt), hyper, batch) -> ((params, opt), stats)
        self.step_grid = jit(jax.vmap(step), donate_argnums=0)
        shared = (None,) * 4
        self.evaluate = jit(evaluate)
        self.evaluate_grid = jit(jax.vmap(evaluate, in_axes=(0, 0, 0, None, *shared)))


@functools.lru_cache(maxsize=16)
def make_direct(graphdef, reward_fn: Callable, gold_fn: Callable, static: DStatic, prompt_len: int) -> DirectFns:
    """The programs (cached). graphdef: of the policy (LM head), also the reference's; reward_fn, gold_fn:
    the `fn` of the proxy and gold `Scorer`s (their params are arguments of evaluate)."""
    S, P = static, prompt_len

    def ref(ref_state, tokens, mask):
        return sequence_logps(graphdef, ref_state, tokens, mask, P, 1.0)

    def init(policy_state, h):
        params = jax.tree.map(jnp.copy, policy_state)
        return params, _tx(h).init(params)

    def loss_fn(params, h, batch):
        ta, ma, tb, mb, label, ref_a, ref_b = batch
        la = sequence_logps(graphdef, params, ta, ma, P, 1.0)
        lb = sequence_logps(graphdef, params, tb, mb, P, 1.0)
        sign = jnp.where(label == 1, 1.0, -1.0)  # the margin of the preferred side over the other
        h_pair = sign * margin(la, ref_a, lb, ref_b)
        loss = jnp.mean(pair_loss(S.loss, h_pair, h.beta))
        return loss, {"loss": loss, "accuracy": jnp.mean(h_pair > 0), "margin": jnp.mean(h.beta * h_pair)}

    def step(state, h, batch):
        params, opt_state = state
        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, h, batch)
        upd, opt_state = _tx(h).update(grads, opt_state, params)
        params = optax.apply_updates(params, upd)
        stats["finite"] = jnp.isfinite(stats["loss"]) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)])
        )
        return (params, opt_state), stats

    def evaluate(params, h, seed, step, ref_state, bank, reward_params, gold_params):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 1), step)
        k_prompt, k_sample = jax.random.split(key)
        prompts = bank[jax.random.randint(k_prompt, (S.eval_batch,), 0, bank.shape[0])]
        smp = sample_traced(graphdef, params, prompts, k_sample, max_new=S.max_new, temperature=h.temperature)
        tokens, mask = smp.tokens, smp.mask
        lp = gpt.response_logprobs_traced(graphdef, params, tokens, P, h.temperature)
        lq = gpt.response_logprobs_traced(graphdef, ref_state, tokens, P, h.temperature)
        m = mask.astype(jnp.float32)
        log_r = jnp.where(mask, lq - lp, 0.0)  # log(ref / pi) per token
        k1 = jnp.sum(-log_r * m, axis=1)
        k3 = jnp.sum((jnp.exp(log_r) - 1.0 - log_r) * m, axis=1)
        gold = gold_fn(gold_params, tokens, mask)
        n = jnp.float32(S.eval_batch)
        se = lambda x: jnp.std(x, ddof=1) / jnp.sqrt(n)
        out = {
            "objective/kl": jnp.mean(k1),
            "objective/kl_se": se(k1),
            "objective/kl_k3": jnp.mean(k3),
            "objective/kl_k3_se": se(k3),
            "proxy/score": jnp.mean(reward_fn(reward_params, tokens, mask)),
            "implicit/reward": h.beta * jnp.mean(k1),
            "eval/length": jnp.mean(jnp.sum(m, axis=1)),
            "eval/gold_se": se(gold["score"]),
        }
        out.update({f"gold/{k}": jnp.mean(v) for k, v in gold.items()})
        return out

    return DirectFns(init, step, evaluate, ref, S.fast_compile)


def _ref_logps(fns, ref_state, tokens, mask, chunk=1024):
    out = [
        np.asarray(fns.ref(ref_state, tokens[i : i + chunk], mask[i : i + chunk])) for i in range(0, len(tokens), chunk)
    ]
    return np.concatenate(out)


def train_direct(policy, reward: Scorer, gold: Scorer, comps, prompt_bank, cfg: DirectConfig, grid, log=None):
    """Train a grid of (beta, seed) points with `cfg.loss` on comparisons `comps` (an `lm.reward_train.Comparisons`
    with label 1 where side a is preferred), evaluating on fresh samples of `prompt_bank` (int32[M, P]).

    policy: (graphdef, state) of the initial policy (LM head), also the frozen reference. reward: the proxy
    `Scorer` whose score is reported (not trained on); gold: the gold `Scorer` (a dict with "score").
    log: optional callable taking each metrics row (training and evaluation rows). Returns the list of rows:
    "train" rows (one per update and grid point: loss, accuracy, margin) and "eval" rows (`points_from_rows`)."""
    grid = [(float(b), int(s)) for b, s in grid]
    if not grid or any(not b > 0 for b, _ in grid) or len(set(grid)) != len(grid):
        raise UsageError(f"the grid must hold distinct (beta > 0, seed) pairs, got {grid}")
    graphdef, state = policy
    n = len(comps) if cfg.max_pairs is None else min(cfg.max_pairs, len(comps))
    spe = n // cfg.batch_size
    if spe < 1:
        raise UsageError(f"{n} comparisons make no batch of {cfg.batch_size}")
    P = comps.prompt_len
    bank = jnp.asarray(prompt_bank, jnp.int32)
    if P + cfg.max_new > nnx.merge(graphdef, state).cfg.n_ctx or bank.shape[1] != P:
        raise UsageError(f"prompt length {bank.shape[1]} / {P} + max_new {cfg.max_new} do not fit the policy")
    fns = make_direct(graphdef, reward.fn, gold.fn, cfg.static(), P)
    ta, ma, tb, mb = (np.asarray(x[:n]) for x in (comps.tokens_a, comps.mask_a, comps.tokens_b, comps.mask_b))
    label = np.asarray(comps.label[:n], np.int32)
    ref_a, ref_b = _ref_logps(fns, state, ta, ma), _ref_logps(fns, state, tb, mb)
    hyper = [cfg.hyper(b) for b, _ in grid]
    hyper = DHyper(*(jnp.stack([h[i] for h in hyper]) for i in range(len(DHyper._fields))))
    seeds = jnp.array([s for _, s in grid], jnp.int32)
    params = (reward.params, gold.params)
    run = fns.init_grid(state, hyper)
    rows: list[dict] = []
    emit = (lambda r: (rows.append(r), log(r))) if log is not None else rows.append
    todo = eval_steps(cfg, spe)

    def evaluate(step, losses):
        out = jax.device_get(fns.evaluate_grid(run[0], hyper, seeds, jnp.int32(step), state, bank, *params))
        for g, (b, s) in enumerate(grid):
            row = {"split": "eval", "step": step, "epoch": step / spe, "beta": b, "seed": s}
            row.update({k: float(v[g]) for k, v in out.items()})
            row["train/loss"] = float(np.mean([x[g] for x in losses])) if losses else float("nan")
            emit(row)

    evaluate(0, [])
    losses, step, t0 = [], 0, time.perf_counter()
    for epoch in range(cfg.epochs):
        perms = np.stack([np.random.default_rng([s, epoch]).permutation(n) for _, s in grid])  # [G, n]
        for j in range(spe):
            idx = perms[:, j * cfg.batch_size : (j + 1) * cfg.batch_size]
            batch = tuple(jnp.asarray(x[idx]) for x in (ta, ma, tb, mb, label, ref_a, ref_b))
            run, stats = fns.step_grid(run, hyper, batch)
            stats = jax.device_get(stats)
            step += 1
            if not np.all(stats["finite"]):
                raise UsageError(f"{cfg.loss.upper()}: non-finite loss at update {step}; the run stopped")
            for g, (b, s) in enumerate(grid):
                emit(
                    {
                        "split": "train",
                        "step": step,
                        "beta": b,
                        "seed": s,
                        **{k: float(stats[k][g]) for k in ("loss", "accuracy", "margin")},
                    }
                )
            losses.append(stats["loss"])
            if step in todo:
                rate = step / (time.perf_counter() - t0)
                evaluate(step, losses)
                rows[-1]["perf/updates_per_s"] = rate
                losses = []
    return rows


def points_from_rows(rows, algo: str, policy_params: int | None = None, extra: dict | None = None) -> pd.DataFrame:
    """The points table of a direct run's evaluation rows: method "rl", `algo`, beta_dpo and kl_coef (= beta),
    step, epoch, kl (k1) with kl_se, kl_k3 with kl_k3_se, gold with gold_eval_se, proxy, implicit_reward, train_loss."""
    out = []
    for r in rows:
        if r.get("split") != "eval":
            continue
        p = {
            "method": "rl",
            "algo": algo,
            "step": int(r["step"]),
            "epoch": float(r["epoch"]),
            "beta_dpo": r["beta"],
            "kl_coef": r["beta"],
            "seed": int(r["seed"]),
            "kl": max(float(r["objective/kl"]), 0.0),
            "kl_se": r["objective/kl_se"],
            "kl_k3": r["objective/kl_k3"],
            "kl_k3_se": r["objective/kl_k3_se"],
            "gold": r["gold/score"],
            "gold_eval_se": r["eval/gold_se"],
            "proxy": r["proxy/score"],
            "implicit_reward": r["implicit/reward"],
            "length": r["eval/length"],
            "train_loss": r["train/loss"],
            "policy_params": policy_params,
        }
        p.update({k: v for k, v in r.items() if k.startswith("gold/") and k != "gold/score"})
        p.update(extra or {})
        out.append(p)
    return pd.DataFrame(out)
