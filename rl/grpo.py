"""GRPO (Shao et al. 2024, DeepSeekMath) against a proxy reward, on the optimizer interface (rl.optimizer):
one compiled program trains a grid of (kl_coef, seed) points, run by rl.runner as PPO is.

One update: batch_size / G prompts from the bank, G responses each (one prefill per prompt); each response's
score r_i from the reward `Scorer`; its advantage relative to its group (no value head, no GAE)
    A_i = (r_i - mean_group(r)) / (std_group(r) + adv_eps)        (std with ddof 1; `group_advantages`),
the same for every token of the response; then `epochs` x `minibatches` Adam steps on
    loss = mean_i [ 1/|o_i| sum_t -( min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps) A_i) - beta k3_t ) ]
with rho_t = pi(o_t) / pi_old(o_t) (pi_old: the rollout's policy), beta = kl_coef and k3_t the per-token KL
estimator of rl.kl against the frozen reference (the initial policy): exp(logq - logp) - 1 - (logq - logp).
The KL is in the loss, not in the reward. Evaluation is PPO's: fresh samples, one a prompt, k1 sequence KL to
the reference, the proxy and the gold (`gold/<component>`, its SE over the batch).
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
from lm.sampling import sample_traced
from rl.grpo_config import GHyper, GRPOConfig, GStatic
from rl.kl import k3, sequence_kl
from rl.optimizer import Fns, Optimizer, RunnerState, grid_jit


def group_advantages(rewards, group_size: int, eps):
    """Group-relative advantages: rewards f32[B] in consecutive groups of `group_size` (B a multiple of it);
    each (r - the group's mean) / (the group's std, ddof 1, + eps). Returns f32[B]."""
    r = rewards.reshape(-1, group_size)
    mean = jnp.mean(r, axis=1, keepdims=True)
    std = jnp.std(r, axis=1, keepdims=True, ddof=1)
    return ((r - mean) / (std + eps)).reshape(-1)


def init_policies(graphdef, state, seeds: Sequence[int]):
    """GRPO policies: one copy of the pretrained initial policy `(graphdef, state)` per grid point (no value
    head: the seed only sets the point's PRNG streams). Returns (graphdef, state stacked over seeds [G, ...])."""
    if not nnx.merge(graphdef, state).has_lm_head:
        raise UsageError("the initial policy needs an LM head")
    n = len(seeds)
    return graphdef, jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)).copy(), state)


def _optimizer(h: GHyper) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(h.grad_clip), optax.adam(h.lr, eps=h.adam_eps))


def _masked_mean(x, m):
    return jnp.sum(x * m) / jnp.maximum(jnp.sum(m), 1.0)


def grpo_loss_terms(logp, logp_old, logp_ref, adv, mask, clip, kl_coef):
    """GRPO's loss on a batch and its parts. logp, logp_old, logp_ref f32[B, T] (0 off the mask), adv f32[B],
    mask bool[B, T]. Returns (loss, clipped surrogate per token f32[B, T], k3 per token f32[B, T]): the loss is
    the mean over responses of each response's token mean of -(surrogate - kl_coef * k3)."""
    m = mask.astype(jnp.float32)
    ratio = jnp.exp(logp - logp_old)
    a = adv[:, None]
    surr = jnp.minimum(ratio * a, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * a)
    kl = k3(jnp.where(mask, logp, 0.0), jnp.where(mask, logp_ref, 0.0))
    per_seq = jnp.sum(-(surr - kl_coef * kl) * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
    return jnp.mean(per_seq), surr, kl


@functools.lru_cache(maxsize=32)
def make_grpo(graphdef, ref_graphdef, reward_fn: Callable, gold_fn: Callable, static: GStatic, prompt_len: int) -> Fns:
    """Build the jitted GRPO programs (cached: equal arguments return the same compiled functions); the
    arguments as `rl.ppo.make_ppo`'s (graphdef: the policy's, here the initial policy's own)."""
    S, P, T, G = static, prompt_len, static.max_new, static.group_size
    n_prompts = S.batch_size // G

    def policy_outputs(params, tokens, temperature, mask):
        lp, logp_all, _ = gpt.response_forward(nnx.merge(graphdef, params), tokens, P, temperature)
        finite = jnp.where(jnp.isneginf(logp_all), 0.0, logp_all)
        entropy = -jnp.sum(jnp.exp(logp_all) * finite, axis=-1)
        return jnp.where(mask, lp, 0.0), entropy

    def ref_logprobs(ref_state, tokens, temperature, mask):
        lq = gpt.response_logprobs_traced(ref_graphdef, ref_state, tokens, P, temperature)
        return jnp.where(mask, lq, 0.0)

    def loss_fn(params, mb, h: GHyper):
        tokens, mask, logp_old, logp_ref, adv = mb
        m = mask.astype(jnp.float32)
        logp, ent = policy_outputs(params, tokens, h.temperature, mask)
        loss, surr, kl = grpo_loss_terms(logp, logp_old, logp_ref, adv, mask, h.clip, h.kl_coef)
        ratio = jnp.exp(logp - logp_old)
        stats = {
            "loss/policy_avg": -_masked_mean(surr, m),
            "loss/kl_avg": _masked_mean(kl, m),
            "loss/total": loss,
            "policy/entropy_avg": _masked_mean(ent, m),
            "policy/approxkl_avg": 0.5 * _masked_mean(jnp.square(logp - logp_old), m),
            "policy/clipfrac_avg": _masked_mean((jnp.abs(ratio - 1.0) > h.clip).astype(jnp.float32), m),
        }
        return loss, stats

    def update(runner: RunnerState, h: GHyper, ref_state, bank, reward_params):
        key, k_prompt, k_sample, k_perm = jax.random.split(runner.key, 4)
        prompts = bank[jax.random.randint(k_prompt, (n_prompts,), 0, bank.shape[0])]
        smp = sample_traced(
            graphdef, runner.params, prompts, k_sample, max_new=T, temperature=h.temperature, n_per_prompt=G
        )
        tokens, mask = smp.tokens, smp.mask
        m = mask.astype(jnp.float32)
        logp, ent = policy_outputs(runner.params, tokens, h.temperature, mask)
        logp_ref = ref_logprobs(ref_state, tokens, h.temperature, mask)
        score = reward_fn(reward_params, tokens, mask)
        adv = group_advantages(score, G, h.adv_eps)
        batch = (tokens, mask, logp, logp_ref, adv)
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
            epoch, (runner.params, runner.opt_state), jax.random.split(k_perm, S.epochs)
        )
        flat = score.reshape(-1, G)
        metrics = {k: jnp.mean(v) for k, v in stats.items()}
        metrics.update(
            {
                "objective/kl": jnp.mean(sequence_kl(logp, logp_ref, mask)),
                f"objective/kl_{S.kl_log}": jnp.mean(sequence_kl(logp, logp_ref, mask, S.kl_log)),
                "objective/kl_coef": runner.kl_coef,
                "objective/scores": jnp.mean(score),
                "objective/entropy": _masked_mean(ent, m),
                "objective/length": jnp.mean(jnp.sum(m, axis=1)),
                "objective/flat_groups": jnp.mean(jnp.all(flat == flat[:, :1], axis=1).astype(jnp.float32)),
                "loss/finite": jnp.all(jnp.isfinite(stats["loss/total"]))
                & jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)])),
            }
        )
        return RunnerState(params, opt_state, key, runner.kl_coef, runner.step + 1), metrics

    def chunk(runner, h, ref_state, bank, reward_params, gold_params):
        del gold_params  # evaluation only; one signature for both programs
        return jax.lax.scan(
            lambda r, _: update(r, h, ref_state, bank, reward_params), runner, None, length=S.eval_every
        )

    def init(policy_state, h, seed):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), 0)
        policy_state, kl_coef = jax.tree.map(jnp.copy, (policy_state, h.kl_coef))
        return RunnerState(policy_state, _optimizer(h).init(policy_state), key, kl_coef, jnp.int32(0))

    def evaluate(params, h, seed, step, ref_state, bank, reward_params, gold_params):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 1), step)  # apart from training
        k_prompt, k_sample = jax.random.split(key)
        prompts = bank[jax.random.randint(k_prompt, (S.eval_batch,), 0, bank.shape[0])]
        smp = sample_traced(graphdef, params, prompts, k_sample, max_new=T, temperature=h.temperature)
        tokens, mask = smp.tokens, smp.mask
        logp, ent = policy_outputs(params, tokens, h.temperature, mask)
        logp_ref = ref_logprobs(ref_state, tokens, h.temperature, mask)
        out = {
            "objective/kl": jnp.mean(sequence_kl(logp, logp_ref, mask)),
            f"objective/kl_{S.kl_log}": jnp.mean(sequence_kl(logp, logp_ref, mask, S.kl_log)),
            "objective/entropy": _masked_mean(ent, mask.astype(jnp.float32)),
            "proxy/score": jnp.mean(reward_fn(reward_params, tokens, mask)),
        }
        gold = gold_fn(gold_params, tokens, mask)
        out.update({f"gold/{k}": jnp.mean(v) for k, v in gold.items()})
        out["eval/gold_se"] = jnp.std(gold["score"], ddof=1) / jnp.sqrt(jnp.float32(S.eval_batch))
        return out, tokens, mask

    return grid_jit(init, chunk, evaluate, S.fast_compile)


GRPO = Optimizer("grpo", "grpo", GRPOConfig, init_policies, make_grpo)
"""GRPO on the optimizer interface (rl.optimizer): `algo` "grpo", config key "grpo"."""
