"""PPO against a proxy reward: one compiled program trains a whole grid of (kl_coef, seed) points.

PureJaxRL shape: `make_ppo(...)` builds pure functions of arrays; `update` is one PPO step
(KV-cache rollout, reference log-probs, rewards, GAE, epochs x minibatches of clipped updates,
all `lax.scan`s); a chunk of `eval_every` updates is a `lax.scan` of `update` inside one `jax.jit`;
`jax.vmap` over the traced hyperparameters (`Hyper`) and the runner states trains a grid in one
compile. `run_ppo` is the thin Python loop around chunks: evaluation, metrics, checkpoints, points.

Reward of a response (lm-human-preferences / Ziegler et al. 2019): per token
    r_t = -kl_coef * k(logp_t, logp_ref_t)           (k = the `kl_penalty` estimator, rl.kl)
plus the proxy score `reward_fn(tokens, mask)` at the last response token. Policy and value head
share the trunk (GPT with both heads); the value of response token t is the scalar head read at
the position that predicts it. The reference is the frozen initial policy.

Adaptive KL controller (Ziegler et al. 2019, sec. 2.2): after each update
    e = clip(KL / kl_target - 1, -0.2, 0.2);  kl_coef <- kl_coef * (1 + e * batch_size / kl_horizon)
with KL the mean sequence log-ratio of the rollout batch.
"""

from __future__ import annotations

import functools
import json
import time
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from core.checkpoint import load_state, save_state
from core.errors import UsageError
from core.store import Run, atomic_write_json, atomic_write_text, canonical_json, to_jsonable
from lm import model as gpt
from lm.sampling import _sample
from rl.diversity import diversity
from rl.gae import gae, whiten
from rl.kl import kl_penalty


@dataclass(frozen=True)
class PPOConfig:
    """PPO settings. Static fields fix shapes and control flow (a new value compiles a new program);
    traced fields only change numbers (they are arrays inside the program, vmappable over a grid)."""

    # --- static: the compiled program ---
    batch_size: int = 64
    """prompts (= responses) per rollout, one update each (Gao: 256)."""
    max_new: int = 16
    """response tokens sampled per prompt (T)."""
    epochs: int = 4
    """passes over each rollout batch."""
    minibatches: int = 4
    """minibatches per epoch; must divide batch_size."""
    eval_every: int = 10
    """updates per compiled chunk; evaluation, logging and a checkpoint follow every chunk."""
    eval_batch: int = 128
    """fresh samples per evaluation."""
    kl_penalty: Literal["k1", "k2", "k3"] = "k1"
    """KL estimator in the per-token penalty (Schulman's k1, k2, k3; rl.kl)."""
    kl_log: Literal["k1", "k2", "k3"] = "k3"
    """a second estimator, logged as objective/kl_<name> beside objective/kl (always k1)."""
    kl_controller: Literal["fixed", "adaptive"] = "fixed"
    """fixed kl_coef, or Ziegler et al.'s adaptive controller towards kl_target."""
    fast_compile: bool = False
    """XLA backend optimisations off: about half the compile time, slower steps (tiny CPU runs, tests)."""
    # --- static: the Python loop only ---
    updates: int = 100
    """PPO updates in the run; a multiple of eval_every."""
    bleu_sample: int = 64
    """evaluation responses subsampled for self-BLEU."""
    # --- traced ---
    lr: float = 1e-4
    """Adam learning rate (constant)."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    clip: float = 0.2
    """policy ratio clip range (Gao: 0.2)."""
    vf_clip: float = 0.2
    """value clip range around the rollout values."""
    gamma: float = 1.0
    """discount."""
    lam: float = 0.95
    """GAE lambda (Gao: 0.95)."""
    kl_coef: float = 0.0
    """KL penalty coefficient (Gao: 0 except in the penalty sweep); the start value when adaptive."""
    ent_coef: float = 0.0
    """entropy bonus coefficient."""
    vf_coef: float = 0.1
    """value loss coefficient."""
    grad_clip: float = 1.0
    """global gradient-norm clip."""
    temperature: float = 1.0
    """sampling temperature; policy and reference log-probs use the same one."""
    kl_target: float = 6.0
    """adaptive controller: target sequence KL in nats."""
    kl_horizon: float = 10000.0
    """adaptive controller: horizon in episodes."""

    def __post_init__(self):
        for name in ("batch_size", "max_new", "epochs", "minibatches", "eval_every", "eval_batch", "updates"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"PPOConfig.{name} must be a positive integer, got {v!r}")
        if self.batch_size % self.minibatches:
            raise UsageError(f"PPOConfig.minibatches={self.minibatches} must divide batch_size={self.batch_size}")
        if self.updates % self.eval_every:
            raise UsageError(f"PPOConfig.updates={self.updates} must be a multiple of eval_every={self.eval_every}")
        for name in ("kl_penalty", "kl_log"):
            if getattr(self, name) not in ("k1", "k2", "k3"):
                raise UsageError(f"PPOConfig.{name} must be k1, k2 or k3, got {getattr(self, name)!r}")
        if self.kl_controller not in ("fixed", "adaptive"):
            raise UsageError(f"PPOConfig.kl_controller must be fixed or adaptive, got {self.kl_controller!r}")
        if not self.temperature > 0 or not self.lr > 0 or self.clip <= 0 or self.kl_coef < 0:
            raise UsageError("PPOConfig: temperature, lr and clip must be > 0 and kl_coef >= 0")

    def static(self) -> Static:
        """The fields that define the compiled program (hashable: a jit static argument)."""
        return Static(*(getattr(self, f) for f in Static._fields))

    def hyper(self, kl_coef: float | None = None) -> Hyper:
        """The traced fields as float32 scalars (kl_coef overridden when given)."""
        vals = {f: getattr(self, f) for f in Hyper._fields}
        if kl_coef is not None:
            vals["kl_coef"] = kl_coef
        return Hyper(**{k: jnp.float32(v) for k, v in vals.items()})


Static = namedtuple(
    "Static",
    ["batch_size", "max_new", "epochs", "minibatches", "eval_every", "eval_batch", "kl_penalty", "kl_log",
     "kl_controller", "fast_compile"],
)
Hyper = namedtuple(
    "Hyper",
    ["lr", "adam_eps", "clip", "vf_clip", "gamma", "lam", "kl_coef", "ent_coef", "vf_coef", "grad_clip",
     "temperature", "kl_target", "kl_horizon"],
)
LOOP_FIELDS = ("updates", "bleu_sample")


class RunnerState(NamedTuple):
    """Everything a run carries from one update to the next (what a checkpoint holds)."""

    params: Any  # nnx.State of the policy (trunk, LM head, value head)
    opt_state: Any  # Optax state
    key: jax.Array  # uint32[2] PRNG key of the next update
    kl_coef: jax.Array  # f32 current KL coefficient (moves only under the adaptive controller)
    step: jax.Array  # int32 updates done


class PPOFns(NamedTuple):
    """The jitted programs of one (policy graphdef, reward, gold, static config)."""

    init: Callable  # (policy_state, hyper, seed) -> RunnerState
    chunk: Callable  # (runner, hyper, ref_state, bank) -> (runner, metrics[eval_every])
    evaluate: Callable  # (params, hyper, seed, step, ref_state, bank) -> (metrics, tokens, mask)
    init_grid: Callable  # the three above, vmapped over a leading grid axis of runner/hyper/seed
    chunk_grid: Callable
    evaluate_grid: Callable


def init_policies(graphdef, state, seeds: Sequence[int]):
    """PPO policies: GPTs with LM and value heads whose trunk and LM head are copies of the pretrained
    initial policy `(graphdef, state)`; each value head is fresh, initialised from its seed.

    Returns (graphdef, state stacked over seeds [G, ...]) of the value-headed policy (one compile, vmapped).
    """
    pre = nnx.merge(graphdef, state)
    if not pre.has_lm_head:
        raise UsageError("the initial policy needs an LM head")
    pg, _ = gpt.abstract(pre.cfg, lm_head=True, scalar_head=True)
    return pg, _init_policies(pre.cfg, state, jnp.asarray(seeds, jnp.int32))


@functools.partial(jax.jit, static_argnums=0)
def _init_policies(cfg, pre_state, seeds):
    def one(seed):
        _, st = gpt.init(cfg, jax.random.PRNGKey(seed), lm_head=True, scalar_head=True)
        st = gpt.transfer_trunk(st, pre_state)
        if "lm_head" in pre_state:  # an untied LM head is not part of the trunk
            st["lm_head"] = pre_state["lm_head"]
        return st

    return jax.vmap(one)(seeds)


def policy_init(graphdef, state, seed: int):
    """One PPO policy (see `init_policies`). Returns (graphdef, state)."""
    pg, stacked = init_policies(graphdef, state, [seed])
    return pg, jax.tree.map(lambda x: x[0], stacked)


def adaptive_kl_coef(kl_coef, kl, target, horizon, n_episodes):
    """Ziegler et al. (2019) proportional controller: the next KL coefficient.

    Arguments: kl_coef current; kl observed sequence KL (nats); target KL; horizon (episodes);
    n_episodes in this update. Returns kl_coef * (1 + clip(kl / target - 1, -0.2, 0.2) * n / horizon).
    """
    err = jnp.clip(kl / target - 1.0, -0.2, 0.2)
    return kl_coef * (1.0 + err * n_episodes / horizon)


def _optimizer(h: Hyper):
    # Built inside the traced program so lr, eps and the clip norm are traced (vmappable) numbers.
    return optax.chain(optax.clip_by_global_norm(h.grad_clip), optax.adam(h.lr, eps=h.adam_eps))


def _masked_mean(x, m):
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


@functools.lru_cache(maxsize=32)
def make_ppo(graphdef, ref_graphdef, reward_fn: Callable, gold_fn: Callable, static: Static,
             prompt_len: int) -> PPOFns:
    """Build the jitted PPO programs (cached: equal arguments return the same compiled functions).

    Arguments: graphdef of the value-headed policy; ref_graphdef of the initial policy; reward_fn
    (tokens, mask) -> f32[B] and gold_fn (tokens, mask) -> dict of f32[B] (with "score"), both pure and
    jittable; static = PPOConfig.static(); prompt_len P.
    Returns: PPOFns.
    """
    S, P, T = static, prompt_len, static.max_new

    def policy_outputs(params, tokens, temperature, mask):
        """Log-probs of the response tokens, values and per-token entropies, one forward: f32[B, T] each."""
        model = nnx.merge(graphdef, params)
        h, _ = model.trunk(tokens[:, :-1])
        h = h[:, P - 1 :]  # position P-1+t predicts response token t
        logp_all = jax.nn.log_softmax(gpt.mask_forbidden(model.logits(h)) / temperature, axis=-1)
        lp = jnp.take_along_axis(logp_all, tokens[:, P:, None], axis=-1)[..., 0]
        # Forbidden tokens have logp -inf and p = 0: zero them before p*logp (no 0 * inf, no NaN gradients).
        finite = jnp.where(jnp.isneginf(logp_all), 0.0, logp_all)
        entropy = -jnp.sum(jnp.exp(logp_all) * finite, axis=-1)
        return jnp.where(mask, lp, 0.0), model.scalar(h), entropy

    def rollout(params, prompts, key, temperature):
        # The traceable sampler body (temperature is traced here; the public `sample` wants a float).
        return _sample(graphdef, params, prompts, key, max_new=T, temperature=temperature, n_per_prompt=1)

    def ref_logprobs(ref_state, tokens, temperature):
        return gpt._response_logprobs(ref_graphdef, ref_state, tokens, P, temperature)

    def loss_fn(params, mb, h: Hyper):
        tokens, mask, logp_old, v_old, adv, ret = mb
        m = mask.astype(jnp.float32)
        logp, v, ent = policy_outputs(params, tokens, h.temperature, mask)
        logratio = logp - logp_old
        ratio = jnp.exp(logratio)
        pg1 = -adv * ratio
        pg2 = -adv * jnp.clip(ratio, 1.0 - h.clip, 1.0 + h.clip)
        pg_loss = _masked_mean(jnp.maximum(pg1, pg2), m)
        v_clipped = v_old + jnp.clip(v - v_old, -h.vf_clip, h.vf_clip)
        vf1, vf2 = jnp.square(v - ret), jnp.square(v_clipped - ret)
        vf_loss = 0.5 * _masked_mean(jnp.maximum(vf1, vf2), m)
        entropy = _masked_mean(ent, m)
        loss = pg_loss + h.vf_coef * vf_loss - h.ent_coef * entropy
        stats = {
            "loss/policy_avg": pg_loss,
            "loss/value_avg": vf_loss,
            "loss/total": loss,
            "policy/entropy_avg": entropy,
            "policy/approxkl_avg": 0.5 * _masked_mean(jnp.square(logratio), m),
            "policy/clipfrac_avg": _masked_mean((pg2 > pg1).astype(jnp.float32), m),
            "val/clipfrac_avg": _masked_mean((jnp.abs(v - v_old) > h.vf_clip).astype(jnp.float32), m),
            "val/ratio": _masked_mean(ratio, m),
        }
        return loss, stats

    def update(runner: RunnerState, h: Hyper, ref_state, bank):
        key, k_prompt, k_sample, k_perm = jax.random.split(runner.key, 4)
        prompts = bank[jax.random.randint(k_prompt, (S.batch_size,), 0, bank.shape[0])]
        smp = rollout(runner.params, prompts, k_sample, h.temperature)
        tokens, mask = smp.tokens, smp.mask
        m = mask.astype(jnp.float32)
        logp, values, ent = policy_outputs(runner.params, tokens, h.temperature, mask)
        logp_ref = ref_logprobs(ref_state, tokens, h.temperature)
        score = reward_fn(tokens, mask)
        last = jax.nn.one_hot(jnp.sum(mask, axis=1) - 1, T)  # the last response token (mask[:, 0] is True)
        rewards = score[:, None] * last - runner.kl_coef * kl_penalty(logp, logp_ref, S.kl_penalty) * m
        values = values * m
        adv, ret = gae(rewards, values, mask, h.gamma, h.lam)
        adv = whiten(adv, mask)
        batch = (tokens, mask, logp, values, adv, ret)
        tx = _optimizer(h)

        def minibatch(carry, idx):
            params, opt_state = carry
            mb = jax.tree.map(lambda x: x[idx], batch)
            (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, mb, h)
            upd, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, upd), opt_state), stats

        def epoch(carry, k):
            idx = jax.random.permutation(k, S.batch_size).reshape(S.minibatches, -1)
            return jax.lax.scan(minibatch, carry, idx)

        (params, opt_state), stats = jax.lax.scan(
            epoch, (runner.params, runner.opt_state), jax.random.split(k_perm, S.epochs))
        seq_kl = jnp.mean(jnp.sum((logp - logp_ref) * m, axis=1))
        kl_coef = runner.kl_coef
        if S.kl_controller == "adaptive":
            kl_coef = adaptive_kl_coef(kl_coef, seq_kl, h.kl_target, h.kl_horizon, S.batch_size)
        metrics = {k: jnp.mean(v) for k, v in stats.items()}
        metrics.update({
            "objective/kl": seq_kl,
            f"objective/kl_{S.kl_log}": jnp.mean(jnp.sum(kl_penalty(logp, logp_ref, S.kl_log) * m, axis=1)),
            "objective/kl_coef": runner.kl_coef,
            "objective/scores": jnp.mean(score),
            "objective/entropy": _masked_mean(ent, m),
            "objective/length": jnp.mean(jnp.sum(m, axis=1)),
            "loss/finite": jnp.all(jnp.isfinite(stats["loss/total"]))
            & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)])),
        })
        return RunnerState(params, opt_state, key, kl_coef, runner.step + 1), metrics

    def chunk(runner, h, ref_state, bank):
        return jax.lax.scan(lambda r, _: update(r, h, ref_state, bank), runner, None, length=S.eval_every)

    def init(policy_state, h, seed):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 0)
        return RunnerState(policy_state, _optimizer(h).init(policy_state), key, h.kl_coef, jnp.int32(0))

    def evaluate(params, h, seed, step, ref_state, bank):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 1), step)  # apart from training
        k_prompt, k_sample = jax.random.split(key)
        prompts = bank[jax.random.randint(k_prompt, (S.eval_batch,), 0, bank.shape[0])]
        smp = rollout(params, prompts, k_sample, h.temperature)
        tokens, mask = smp.tokens, smp.mask
        m = mask.astype(jnp.float32)
        logp, _, ent = policy_outputs(params, tokens, h.temperature, mask)
        logp_ref = ref_logprobs(ref_state, tokens, h.temperature)
        out = {
            "objective/kl": jnp.mean(jnp.sum((logp - logp_ref) * m, axis=1)),
            f"objective/kl_{S.kl_log}": jnp.mean(jnp.sum(kl_penalty(logp, logp_ref, S.kl_log) * m, axis=1)),
            "objective/entropy": _masked_mean(ent, m),
            "proxy/score": jnp.mean(reward_fn(tokens, mask)),
        }
        gold = gold_fn(tokens, mask)
        out.update({f"gold/{k}": jnp.mean(v) for k, v in gold.items()})
        # standard error of the gold mean over this evaluation batch (sampling noise of one policy)
        out["eval/gold_se"] = jnp.std(gold["score"], ddof=1) / jnp.sqrt(jnp.float32(S.eval_batch))
        return out, tokens, mask

    opts = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    jit = functools.partial(jax.jit, compiler_options=opts if S.fast_compile else None)
    return PPOFns(
        init=jit(init), chunk=jit(chunk), evaluate=jit(evaluate),
        init_grid=jit(jax.vmap(init)), chunk_grid=jit(jax.vmap(chunk, in_axes=(0, 0, None, None))),
        evaluate_grid=jit(jax.vmap(evaluate, in_axes=(0, 0, 0, None, None, None))),
    )


# ---------------------------------------------------------------- the Python loop around chunks


class NonFiniteLoss(RuntimeError):
    """A PPO loss became NaN or inf: the run stops, its last good checkpoint is kept."""


@dataclass
class _Program:
    """A grid ready to run: the jitted programs and their array arguments."""

    fns: PPOFns
    graphdef: Any  # of the value-headed policy
    cfg: PPOConfig
    grid: list[tuple[float, int]]
    hyper: Hyper  # f32[G] each
    seeds: jax.Array  # int32[G]
    ref_state: Any
    bank: jax.Array
    prompt_len: int
    policy_states: Any  # stacked initial policy states [G, ...]
    policy_params: int


def _check_grid(grid) -> list[tuple[float, int]]:
    out = []
    for item in grid:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise UsageError(f"grid entries must be (kl_coef, seed) pairs, got {item!r}")
        k, s = item
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not float(k) >= 0:
            raise UsageError(f"grid entry {item!r}: need kl_coef >= 0 and an integer seed")
        out.append((float(k), int(s)))
    if len(set(out)) != len(out):
        raise UsageError("the grid has a repeated (kl_coef, seed) pair")
    if not out:
        raise UsageError("the grid is empty: give at least one (kl_coef, seed) pair")
    return out


def _program(policy, reward_fn, gold_fn, prompt_bank, cfg: PPOConfig, grid) -> _Program:
    graphdef, state = policy
    grid = _check_grid(grid)
    bank = jnp.asarray(prompt_bank)
    if bank.ndim != 2 or not jnp.issubdtype(bank.dtype, jnp.integer) or bank.shape[0] < 1:
        raise UsageError(f"prompt_bank must be an int array [M, P], got {bank.dtype}{list(bank.shape)}")
    n_ctx = nnx.merge(graphdef, state).cfg.n_ctx
    if bank.shape[1] + cfg.max_new > n_ctx:
        raise UsageError(f"prompt length {bank.shape[1]} + max_new {cfg.max_new} exceeds the policy's n_ctx={n_ctx}")
    pg, stacked = init_policies(graphdef, state, [seed for _, seed in grid])
    hyper = Hyper(*(jnp.stack([cfg.hyper(k)[i] for k, _ in grid]) for i in range(len(Hyper._fields))))
    fns = make_ppo(pg, graphdef, reward_fn, gold_fn, cfg.static(), int(bank.shape[1]))
    pcfg = nnx.merge(graphdef, state).cfg
    return _Program(fns, pg, cfg, grid, hyper, jnp.array([s for _, s in grid], jnp.int32), state,
                    bank.astype(jnp.int32), int(bank.shape[1]), stacked, gpt.param_count(pcfg, lm_head=True))


def _check_finite(prog: _Program, metrics: dict, step0: int, where: str) -> None:
    ok = np.asarray(metrics["loss/finite"])  # [G, eval_every]
    if ok.all():
        return
    g, i = map(int, np.argwhere(~ok)[0])
    k, s = prog.grid[g]
    raise NonFiniteLoss(f"PPO: non-finite loss at update {step0 + i + 1} (grid point kl_coef={k}, seed={s}); "
                        f"run stopped; {where}")


def _train_rows(prog: _Program, metrics: dict, step0: int) -> list[dict]:
    rows = []
    for g, (k, s) in enumerate(prog.grid):
        for i in range(prog.cfg.eval_every):
            row = {name: float(v[g, i]) for name, v in metrics.items() if name != "loss/finite"}
            rows.append({"split": "train", "step": step0 + i + 1, "kl_coef": k, "seed": s, **row})
    return rows


def _eval_rows(prog: _Program, runner: RunnerState, step: int) -> list[dict]:
    out, tokens, mask = prog.fns.evaluate_grid(runner.params, prog.hyper, prog.seeds, jnp.int32(step),
                                               prog.ref_state, prog.bank)
    out, tokens, mask, kl_coef = jax.device_get((out, tokens, mask, runner.kl_coef))
    rows = []
    for g, (k, s) in enumerate(prog.grid):
        div = diversity(tokens[g], mask[g], prog.prompt_len, prog.cfg.bleu_sample, np.random.default_rng([s, step]))
        row = {name: float(v[g]) for name, v in out.items()}
        row["objective/kl_coef"] = float(kl_coef[g])
        row.update({f"eval/{name}": v for name, v in div.items()})
        rows.append({"split": "eval", "step": step, "kl_coef": k, "seed": s, **row})
    return rows


def points_from_rows(rows: Sequence[dict], rm_params: int | None = None, policy_params: int | None = None,
                     extra: dict | None = None):
    """RL points (DESIGN.md points table) from evaluation rows of the metrics.

    Arguments: rows (dicts with split == "eval"; others are skipped); rm_params, policy_params and
    `extra` columns copied into every row. Returns: a pandas DataFrame, one row per (grid point, step).
    """
    import pandas as pd

    out = []
    for r in rows:
        if r.get("split") != "eval":
            continue
        p = {"method": "rl", "step": int(r["step"]), "kl": max(float(r["objective/kl"]), 0.0),
             "gold": r["gold/score"], "proxy": r["proxy/score"], "kl_coef": r["kl_coef"], "seed": int(r["seed"]),
             "rm_params": rm_params, "policy_params": policy_params, "entropy": r["objective/entropy"],
             "distinct_1": r["eval/distinct_1"], "distinct_2": r["eval/distinct_2"],
             "self_bleu": r["eval/self_bleu"], "length": r["eval/length"],
             "gold_eval_se": r.get("eval/gold_se", float("nan"))}
        p.update({k: v for k, v in r.items() if k.startswith("gold/") and k != "gold/score"})
        p.update(extra or {})
        out.append(p)
    return pd.DataFrame(out)


def train_grid(policy, reward_fn, gold_fn, prompt_bank, cfg: PPOConfig, grid) -> list[dict]:
    """Train a grid of (kl_coef, seed) points in one compiled program, in memory (no store, no checkpoints).

    Arguments: policy (graphdef, state) of the pretrained initial policy (LM head); reward_fn and
    gold_fn as in `make_ppo`; prompt_bank int32[M, P]; cfg; grid of (kl_coef, seed) pairs.
    Returns: one dict a grid point: kl_coef, seed, graphdef, state (final policy), train (metric ->
    float[updates]), eval (evaluation rows, step 0 included), updates_per_s (whole grid, compile excluded).
    """
    prog = _program(policy, reward_fn, gold_fn, prompt_bank, cfg, grid)
    runner = prog.fns.init_grid(prog.policy_states, prog.hyper, prog.seeds)
    evals = _eval_rows(prog, runner, 0)
    train: list[dict] = []
    seconds, step = 0.0, 0
    for c in range(cfg.updates // cfg.eval_every):
        t0 = time.perf_counter()
        runner, m = prog.fns.chunk_grid(runner, prog.hyper, prog.ref_state, prog.bank)
        m = jax.device_get(m)
        if c > 0:  # the first chunk includes compilation
            seconds += time.perf_counter() - t0
        _check_finite(prog, m, step, "nothing saved (train_grid keeps no checkpoints)")
        step += cfg.eval_every
        train.append(m)
        evals += _eval_rows(prog, runner, step)
    timed = cfg.updates - cfg.eval_every
    results = []
    for g, (k, s) in enumerate(prog.grid):
        results.append({
            "kl_coef": k, "seed": s, "graphdef": prog.graphdef,
            "state": jax.tree.map(lambda x, g=g: x[g], runner.params),
            "train": {n: np.concatenate([np.asarray(m[n][g]) for m in train]) for n in train[0]},
            "eval": [r for r in evals if r["kl_coef"] == k and r["seed"] == s],
            "updates_per_s": timed / seconds if seconds > 0 else float("nan"),
        })
    return results


# ---------------------------------------------------------------- checkpoints and the run store


def _save(run_path: Path, runner: RunnerState, step: int) -> None:
    """Checkpoint the full runner state (atomically replacing the previous one), then note its step."""
    save_state(run_path / "checkpoint", runner)
    atomic_write_json(run_path / "checkpoint.json", {"step": step})


def _load(run_path: Path, template: RunnerState) -> tuple[RunnerState, int] | None:
    """The last checkpoint, shaped like `template` (from jax.eval_shape), and its step; None when there is none."""
    if not (run_path / "checkpoint").is_dir():
        return None
    runner = load_state(run_path / "checkpoint", template)
    return runner, int(np.asarray(runner.step).reshape(-1)[0])  # the state's own count is the truth


def run_ppo(run, policy, reward_fn: Callable, gold_fn: Callable, prompt_bank, cfg: PPOConfig,
            grid: Sequence[tuple[float, int]], *, rm_params: int | None = None, extra: dict | None = None,
            max_chunks: int | None = None, progress: bool = False):
    """Train a grid of (kl_coef, seed) points against `reward_fn` in one compiled program, into a run.

    After every chunk of `eval_every` updates: evaluation rows and the chunk's per-update training rows
    go to metrics.jsonl, then the full runner state is checkpointed. A relaunch resumes from the last
    checkpoint bit-identically; a finished run (DONE) returns its points at once.

    Arguments:
      run: a `core.store.Run` or a directory (its config.json is written when missing).
      policy: (graphdef, state) of the pretrained initial policy (LM head); also the frozen reference.
      reward_fn: (tokens int32[B, P+T], mask bool[B, T]) -> f32[B], pure and jittable, recentred.
      gold_fn: same arguments -> dict of f32[B] gold components, "score" among them.
      prompt_bank: int32[M, P] prompts, sampled with replacement inside the program.
      cfg: PPOConfig. grid: (kl_coef, seed) pairs; kl_coef overrides cfg.kl_coef, seed sets the value head
        initialisation and every PRNG stream of the point.
      rm_params, extra: copied into every points row (extra: a dict of further columns).
      max_chunks: stop after this many chunks in this call (the run stays resumable); None: to the end.
      progress: show a tqdm bar.
    Returns: the points DataFrame (also written to points.parquet, then DONE), or None when stopped by
    max_chunks. Raises NonFiniteLoss when a loss is NaN/inf (the last good checkpoint is kept).
    """
    if not isinstance(run, Run):
        run = Run(Path(run))
        run.path.mkdir(parents=True, exist_ok=True)
        config = {"ppo": cfg, "grid": [list(g) for g in grid], "extra": extra}
        if not (run.path / "config.json").exists():
            atomic_write_json(run.path / "config.json", config)
        elif canonical_json(run.config()) != canonical_json(config):
            raise UsageError(f"{run.path} holds a run with a different PPO config or grid; use a new directory")
    if run.done:
        return run.points()
    prog = _program(policy, reward_fn, gold_fn, prompt_bank, cfg, grid)
    template = jax.eval_shape(prog.fns.init_grid, prog.policy_states, prog.hyper, prog.seeds)
    loaded = _load(run.path, template)
    if loaded is None:
        runner, step = prog.fns.init_grid(prog.policy_states, prog.hyper, prog.seeds), 0
        run.reset_metrics()
        for row in _eval_rows(prog, runner, 0):
            run.log(row)
    else:
        runner, step = loaded
        # Rows logged after the checkpoint (a crash between logging and saving) are redone: drop them.
        kept = [r for r in run.metrics() if r.get("step", 0) <= step]
        atomic_write_text(run.path / "metrics.jsonl",
                          "".join(json.dumps(to_jsonable(r), sort_keys=True) + "\n" for r in kept))
    n_chunks = cfg.updates // cfg.eval_every
    todo = range(step // cfg.eval_every, n_chunks)
    if max_chunks is not None:
        todo = todo[:max_chunks]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.updates, initial=step, desc="ppo", unit="update")
    for _ in todo:
        t0 = time.perf_counter()
        new, metrics = prog.fns.chunk_grid(runner, prog.hyper, prog.ref_state, prog.bank)
        metrics = jax.device_get(metrics)
        where = (f"last good checkpoint (update {step}) kept in {run.path / 'checkpoint'}" if step
                 else "no checkpoint was written")
        _check_finite(prog, metrics, step, where)
        seconds = time.perf_counter() - t0
        for row in _train_rows(prog, metrics, step):
            run.log(row)
        runner, step = new, step + cfg.eval_every
        for row in _eval_rows(prog, runner, step):
            run.log({**row, "perf/updates_per_s": cfg.eval_every / seconds})  # the first chunk includes compiling
        _save(run.path, runner, step)
        if bar is not None:
            bar.update(cfg.eval_every)
    if bar is not None:
        bar.close()
    if step < cfg.updates:
        return None
    points = points_from_rows(run.metrics(), rm_params, prog.policy_params, extra)
    run.write_points(points)
    run.mark_done({"updates": step, "grid": [list(g) for g in prog.grid]})
    return points
