"""PPO against a proxy reward: one compiled program trains a whole grid of (kl_coef, seed) points.

PureJaxRL shape: `make_ppo(...)` builds pure functions of arrays; `update` is one PPO step
(KV-cache rollout, reference log-probs, rewards, GAE, epochs x minibatches of clipped updates,
all `lax.scan`s); a chunk of `eval_every` updates is a `lax.scan` of `update` inside one `jax.jit`;
`jax.vmap` over the traced hyperparameters (`Hyper`) and the runner states trains a grid in one
compile. The Python loop around chunks (evaluation, metrics, checkpoints, points) is rl.runner.

Weights are arguments of the programs, never constants inside them: the reward and gold models come
as `Scorer`s, a pure function (hashed by value: it keys the compile cache) and its parameters (passed
in at every call). Two proxies of one shape share one compiled program.

Reward of a response (lm-human-preferences / Ziegler et al. 2019): per token
    r_t = -kl_coef * k(logp_t, logp_ref_t)           (k = the `kl_penalty` estimator, rl.kl)
plus the proxy score `reward.fn(reward.params, tokens, mask)` at the last response token. Policy and
value head share the trunk (GPT with both heads); the value of response token t is the scalar head
read at the position that predicts it. The reference is the frozen initial policy.

Adaptive KL controller (Ziegler et al. 2019, sec. 2.2): after each update
    e = clip(KL / kl_target - 1, -0.2, 0.2);  kl_coef <- kl_coef * (1 + e * batch_size / kl_horizon)
with KL the mean sequence log-ratio of the rollout batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from core.errors import UsageError
from lm import model as gpt
from lm.sampling import draw_prompts, sample_traced
from lm.scorer import Scorer, padded
from rl.gae import gae, whiten
from rl.kl import kl_penalty, sequence_kl
from rl.optimizer import Fns, Optimizer, RunnerState, grid_jit
from rl.ppo_config import Hyper, PPOConfig, Static

PPOFns = Fns  # the programs of PPO (the interface's Fns)
__all__ = ["PPO", "PPOFns", "RunnerState", "Scorer", "adaptive_kl_coef", "init_policies", "make_ppo", "ppo_functions"]


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


def adaptive_kl_coef(kl_coef, kl, target, horizon, n_episodes):
    """Ziegler et al. (2019) proportional controller: the next KL coefficient.

    Arguments: kl_coef current; kl observed sequence KL (nats); target KL; horizon (episodes);
    n_episodes in this update. Returns kl_coef * (1 + clip(kl / target - 1, -0.2, 0.2) * n / horizon).
    """
    err = jnp.clip(kl / target - 1.0, -0.2, 0.2)
    return kl_coef * (1.0 + err * n_episodes / horizon)


def _optimizer(h: Hyper) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam. Built inside the traced program so lr, eps and the clip norm are
    traced (vmappable) numbers."""
    return optax.chain(optax.clip_by_global_norm(h.grad_clip), optax.adam(h.lr, eps=h.adam_eps))


def _masked_mean(x, m):
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


@functools.lru_cache(maxsize=32)
def make_ppo(graphdef, ref_graphdef, reward_fn: Callable, gold_fn: Callable, static: Static, prompt_len: int) -> Fns:
    """Build the jitted PPO programs (cached: equal arguments return the same compiled functions).

    Arguments: graphdef of the value-headed policy; ref_graphdef of the initial policy; reward_fn and
    gold_fn the `fn` of the reward and gold `Scorer`s (their params are arguments of chunk/evaluate);
    static = PPOConfig.static(); prompt_len P.
    Returns: PPOFns.
    """
    init, update, evaluate = ppo_functions(graphdef, ref_graphdef, reward_fn, gold_fn, static, prompt_len)

    def chunk(runner, h, ref_state, bank, reward_params, gold_params):
        del gold_params  # evaluation only; one signature for both programs
        return jax.lax.scan(
            lambda r, _: update(r, h, ref_state, bank, reward_params), runner, None, length=static.eval_every
        )

    return grid_jit(init, chunk, evaluate, static.fast_compile)


def ppo_functions(graphdef, ref_graphdef, reward_fn: Callable, gold_fn: Callable, static: Static, prompt_len: int):
    """PPO's pure functions `(init, update, evaluate)` (arguments as `make_ppo`'s), for optimizers built on PPO
    (rl.ppo_constrained). `update(runner, h, ref_state, bank, reward_params, score_weight=None)` is one PPO
    update; `score_weight` (a traced scalar) multiplies the proxy score in the reward (a Lagrangian's
    1 - lambda); None (PPO) leaves the score as it is."""
    S, P, T = static, prompt_len, static.max_new

    def policy_outputs(params, tokens, temperature, mask, offsets):
        """Log-probs of the response tokens, values and per-token entropies, one forward: f32[B, T] each.
        offsets: the prompts' left-padding widths (None: a plain bank, `lm.sampling.PaddedBank`)."""
        model = nnx.merge(graphdef, params)
        lp, logp_all, h = gpt.response_forward(model, tokens, P, temperature, offsets)
        # Forbidden tokens have logp -inf and p = 0: zero them before p*logp (no 0 * inf, no NaN gradients).
        finite = jnp.where(jnp.isneginf(logp_all), 0.0, logp_all)
        entropy = -jnp.sum(jnp.exp(logp_all) * finite, axis=-1)
        return jnp.where(mask, lp, 0.0), model.scalar(h), entropy

    def rollout(params, prompts, key, temperature, offsets):
        return sample_traced(graphdef, params, prompts, key, T, temperature, n_per_prompt=1, offsets=offsets)

    def ref_logprobs(ref_state, tokens, temperature, offsets):
        return gpt.response_logprobs_traced(ref_graphdef, ref_state, tokens, P, temperature, offsets)

    def loss_fn(params, mb, h: Hyper):
        tokens, mask, logp_old, v_old, adv, ret, offsets = mb
        m = mask.astype(jnp.float32)
        logp, v, ent = policy_outputs(params, tokens, h.temperature, mask, offsets)
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

    def update(runner: RunnerState, h: Hyper, ref_state, bank, reward_params, score_weight=None):
        key, k_prompt, k_sample, k_perm = jax.random.split(runner.key, 4)
        prompts, offsets = draw_prompts(bank, jax.random.randint(k_prompt, (S.batch_size,), 0, bank.shape[0]))
        smp = rollout(runner.params, prompts, k_sample, h.temperature, offsets)
        tokens, mask = smp.tokens, smp.mask
        m = mask.astype(jnp.float32)
        logp, values, ent = policy_outputs(runner.params, tokens, h.temperature, mask, offsets)
        logp_ref = ref_logprobs(ref_state, tokens, h.temperature, offsets)
        score = reward_fn(reward_params, tokens, mask, **padded(offsets))
        last = jax.nn.one_hot(jnp.sum(mask, axis=1) - 1, T)  # the last response token (mask[:, 0] is True)
        shaped = score if score_weight is None else score_weight * score
        rewards = shaped[:, None] * last - runner.kl_coef * kl_penalty(logp, logp_ref, S.kl_penalty) * m
        values = values * m
        adv, ret = gae(rewards, values, mask, h.gamma, h.lam)
        adv = whiten(adv, mask)
        batch = (tokens, mask, logp, values, adv, ret, offsets)
        tx = _optimizer(h)
        if S.warmup:  # a linear warm-up of the step, by update (static: no warm-up compiles the program of before)
            warm = jnp.minimum(1.0, (runner.step + 1).astype(jnp.float32) / S.warmup)

        def minibatch(carry, idx):
            params, opt_state = carry
            mb = jax.tree.map(lambda x: x[idx], batch)
            (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, mb, h)
            upd, opt_state = tx.update(grads, opt_state, params)
            if S.warmup:
                upd = jax.tree.map(lambda u: u * warm, upd)
            return (optax.apply_updates(params, upd), opt_state), stats

        def epoch(carry, k):
            idx = jax.random.permutation(k, S.batch_size).reshape(S.minibatches, -1)
            return jax.lax.scan(minibatch, carry, idx)

        (params, opt_state), stats = jax.lax.scan(
            epoch, (runner.params, runner.opt_state), jax.random.split(k_perm, S.epochs)
        )
        seq_kl = jnp.mean(sequence_kl(logp, logp_ref, mask))
        kl_coef = runner.kl_coef
        if S.kl_controller == "adaptive":
            kl_coef = adaptive_kl_coef(kl_coef, seq_kl, h.kl_target, h.kl_horizon, S.batch_size)
        metrics = {k: jnp.mean(v) for k, v in stats.items()}
        metrics.update(
            {
                "objective/kl": seq_kl,
                f"objective/kl_{S.kl_log}": jnp.mean(sequence_kl(logp, logp_ref, mask, S.kl_log)),
                "objective/kl_coef": runner.kl_coef,
                "objective/scores": jnp.mean(score),
                "objective/entropy": _masked_mean(ent, m),
                "objective/length": jnp.mean(jnp.sum(m, axis=1)),
                "loss/finite": jnp.all(jnp.isfinite(stats["loss/total"]))
                & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)])),
            }
        )
        return RunnerState(params, opt_state, key, kl_coef, runner.step + 1), metrics

    def init(policy_state, h, seed):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 0)
        # Copies: the runner owns its buffers (chunk donates it), never aliases the caller's state or hyper.
        policy_state, kl_coef = jax.tree.map(jnp.copy, (policy_state, h.kl_coef))
        return RunnerState(policy_state, _optimizer(h).init(policy_state), key, kl_coef, jnp.int32(0))

    def evaluate(params, h, seed, step, ref_state, bank, reward_params, gold_params):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 1), step)  # apart from training
        k_prompt, k_sample = jax.random.split(key)
        prompts, offsets = draw_prompts(bank, jax.random.randint(k_prompt, (S.eval_batch,), 0, bank.shape[0]))
        smp = rollout(params, prompts, k_sample, h.temperature, offsets)
        tokens, mask = smp.tokens, smp.mask
        m = mask.astype(jnp.float32)
        logp, _, ent = policy_outputs(params, tokens, h.temperature, mask, offsets)
        logp_ref = ref_logprobs(ref_state, tokens, h.temperature, offsets)
        out = {
            "objective/kl": jnp.mean(sequence_kl(logp, logp_ref, mask)),
            f"objective/kl_{S.kl_log}": jnp.mean(sequence_kl(logp, logp_ref, mask, S.kl_log)),
            "objective/entropy": _masked_mean(ent, m),
            "proxy/score": jnp.mean(reward_fn(reward_params, tokens, mask, **padded(offsets))),
        }
        gold = gold_fn(gold_params, tokens, mask, **padded(offsets))
        out.update({f"gold/{k}": jnp.mean(v) for k, v in gold.items()})
        # standard error of the gold mean over this evaluation batch (sampling noise of one policy)
        out["eval/gold_se"] = jnp.std(gold["score"], ddof=1) / jnp.sqrt(jnp.float32(S.eval_batch))
        return out, tokens, mask

    return init, update, evaluate


PPO = Optimizer("ppo", "ppo", PPOConfig, init_policies, make_ppo)
"""PPO on the optimizer interface (rl.optimizer): the runner's `algo` "ppo", config key "ppo"."""
