"""Pretraining of a GPT language model on a token corpus: next-token cross-entropy, AdamW, warmup + cosine.

The caller owns the loss mask (shape [N, S], over the whole sequence): `loss_mask[n, s]` says whether
token s of row n is a target, predicted from tokens < s (position 0 is never a target). Put prompts in
or out of the loss by setting their columns.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from core.errors import UsageError
from lm.model import ModelConfig, init


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Optimisation of the language model (shapes: steps, batch_size; numbers: the rest)."""

    steps: int = 2000  # optimizer steps
    batch_size: int = 64  # sequences a step (sampled without replacement, epoch by epoch)
    lr: float = 3e-3  # peak learning rate
    warmup: int = 100  # linear warmup steps, then cosine decay to lr / 10 at `steps`
    weight_decay: float = 0.01  # AdamW decay on matrices (not on biases, norms)
    grad_clip: float = 1.0  # global gradient-norm clip
    eval_frac: float = 0.05  # fraction of rows held out for the held-out loss (0: none)
    seed: int = 0  # data split and batch order
    log_every: int = 100  # steps between history points (and held-out evaluations)

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UsageError(f"PretrainConfig.{name} must be a positive integer, got {v!r}")
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise UsageError(f"PretrainConfig.warmup must be a non-negative integer, got {self.warmup!r}")
        if not self.lr > 0 or self.weight_decay < 0 or not self.grad_clip > 0:
            raise UsageError("PretrainConfig: need lr > 0, weight_decay >= 0, grad_clip > 0")
        if not 0 <= self.eval_frac < 1:
            raise UsageError(f"PretrainConfig.eval_frac must be in [0, 1), got {self.eval_frac!r}")


def lm_loss_terms(graphdef, state, tokens, loss_mask):
    """Summed next-token negative log-likelihood over target positions and their count (both f32 scalars)."""
    logits, _ = nnx.merge(graphdef, state)(tokens[:, :-1])
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
    w = loss_mask[:, 1:].astype(jnp.float32)
    return jnp.sum(nll * w), jnp.sum(w)


def lr_schedule(pre_cfg: PretrainConfig) -> optax.Schedule:
    """Linear warmup from 0 to `lr` over `warmup` steps, then cosine decay to lr / 10 at `steps`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=pre_cfg.lr,
        warmup_steps=pre_cfg.warmup,
        decay_steps=max(pre_cfg.steps, pre_cfg.warmup + 1),
        end_value=pre_cfg.lr / 10,
    )


def make_optimizer(pre_cfg: PretrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW on `lr_schedule` (weight decay on matrices only)."""
    schedule = lr_schedule(pre_cfg)
    decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)
    return optax.chain(
        optax.clip_by_global_norm(pre_cfg.grad_clip),
        optax.adamw(schedule, weight_decay=pre_cfg.weight_decay, mask=decay_mask),
    )


def _check_data(model_cfg: ModelConfig, tokens, loss_mask):
    tokens, loss_mask = np.asarray(tokens), np.asarray(loss_mask)
    if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer) or tokens.shape[1] < 2:
        raise UsageError(f"pretrain: tokens must be an int array [N, S] with S >= 2, got {tokens.dtype}{tokens.shape}")
    if loss_mask.shape != tokens.shape:
        raise UsageError(f"pretrain: loss_mask shape {loss_mask.shape} != tokens shape {tokens.shape}")
    if tokens.shape[1] > model_cfg.n_ctx:
        raise UsageError(f"pretrain: sequences of length {tokens.shape[1]} exceed n_ctx={model_cfg.n_ctx}")
    if tokens.min() < 0 or tokens.max() >= model_cfg.vocab_size:
        raise UsageError(f"pretrain: token ids must lie in [0, {model_cfg.vocab_size})")
    return tokens.astype(np.int32), loss_mask.astype(bool)


def pretrain(model_cfg: ModelConfig, pre_cfg: PretrainConfig, tokens, loss_mask, key, progress: bool = True):
    """Train a fresh LM-headed GPT on `tokens` with next-token cross-entropy on `loss_mask` targets.

    Arguments: model_cfg; pre_cfg; tokens int[N, S] (S <= n_ctx); loss_mask bool[N, S]; key: PRNG key or
    int seed for the initial weights (pre_cfg.seed sets the held-out split and batch order); progress: tqdm.
    Returns (graphdef, state, history): history has lists `step`, `train_loss` (mean since the previous
    point), `eval_loss` (held-out, NaN when eval_frac is 0) and `lr`, one entry every `log_every` steps
    and at the last step.
    """
    tokens, loss_mask = _check_data(model_cfg, tokens, loss_mask)
    n = len(tokens)
    rng = np.random.default_rng(pre_cfg.seed)
    perm = rng.permutation(n)
    n_eval = min(n - 1, max(1, round(n * pre_cfg.eval_frac))) if pre_cfg.eval_frac > 0 else 0
    eval_idx, train_idx = perm[:n_eval], perm[n_eval:]
    if len(train_idx) < pre_cfg.batch_size:
        raise UsageError(f"pretrain: {len(train_idx)} training rows < batch_size={pre_cfg.batch_size}")
    train_tokens, train_mask = jnp.asarray(tokens[train_idx]), jnp.asarray(loss_mask[train_idx])

    graphdef, params = init(model_cfg, key)
    tx = make_optimizer(pre_cfg)
    opt_state = tx.init(params)

    def train_step(params, opt_state, data_tokens, data_mask, idx):
        def loss_fn(p):
            total, count = lm_loss_terms(graphdef, p, data_tokens[idx], data_mask[idx])
            return total / jnp.maximum(count, 1.0)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    # Parameters and optimizer state are updated in place (donated); data stays on the device.
    step_fn = jax.jit(train_step, donate_argnums=(0, 1))
    terms_fn = jax.jit(lambda p, t, m: lm_loss_terms(graphdef, p, t, m))
    schedule = lr_schedule(pre_cfg)

    def held_out_loss(p) -> float:
        if n_eval == 0:
            return float("nan")
        chunk = max(pre_cfg.batch_size, 256)
        total = count = 0.0
        for lo in range(0, n_eval, chunk):
            idx = eval_idx[lo : lo + chunk]
            pad = chunk - len(idx)  # fixed shape: pad with masked-out copies of the first row
            t = np.concatenate([tokens[idx], np.repeat(tokens[idx[:1]], pad, axis=0)])
            m = np.concatenate([loss_mask[idx], np.zeros((pad, tokens.shape[1]), bool)])
            s, c = terms_fn(p, jnp.asarray(t), jnp.asarray(m))
            total, count = total + float(s), count + float(c)
        return total / max(count, 1.0)

    history: dict[str, list] = {"step": [], "train_loss": [], "eval_loss": [], "lr": []}
    bar = None
    if progress:
        bar = tqdm(total=pre_cfg.steps, desc="pretrain", unit="step")
    order, pos, recent = rng.permutation(len(train_idx)), 0, []
    for step in range(1, pre_cfg.steps + 1):
        if pos + pre_cfg.batch_size > len(order):  # next epoch
            order, pos = rng.permutation(len(train_idx)), 0
        idx = jnp.asarray(order[pos : pos + pre_cfg.batch_size], jnp.int32)
        pos += pre_cfg.batch_size
        params, opt_state, loss = step_fn(params, opt_state, train_tokens, train_mask, idx)
        recent.append(loss)
        if step % pre_cfg.log_every == 0 or step == pre_cfg.steps:
            history["step"].append(step)
            history["train_loss"].append(float(jnp.mean(jnp.stack(recent))))
            history["eval_loss"].append(held_out_loss(params))
            history["lr"].append(float(schedule(step - 1)))
            recent = []
            if bar is not None:
                bar.set_postfix(train=f"{history['train_loss'][-1]:.3f}", eval=f"{history['eval_loss'][-1]:.3f}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return graphdef, params, history
