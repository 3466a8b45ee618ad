"""Bradley-Terry training of scalar-head reward models (lm.model's GPT), k seeds of one size in one
vmapped program: the engine under both the proxy ladder (proxy_rm) and the learned gold (gold_rm.learned).

A comparison is two responses to one prompt and a label (1: the first is preferred). The loss is
the Bradley-Terry negative log-likelihood  -log sigmoid(s * (r_a - r_b))  with s = +1 for label 1
and -1 for label 0, r read from the scalar head (at each response's last token, or summed / averaged
over the response: `POOLS`).

An ensemble of k members differs only by seed (initialisation and data order). All k are trained
together: states are stacked on a leading axis and one `jax.vmap`-ed epoch (a `lax.scan` over
minibatches) trains them at once, which equals k separate trainings with the same seeds.

The optimisation settings are any object with the attributes epochs, batch_size, lr, warmup_frac,
weight_decay, grad_clip and pool (`proxy_rm.train.ProxyTrainConfig`, `gold_rm.learned.LearnedGoldConfig`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from core import mesh as meshes
from lm.model import GPT, ModelConfig, forward, scalar_at_end, transfer_trunk

POOLS = ("last", "sum", "mean")


def reward(graphdef, state, tokens, mask, prompt_len: int, pool: str = "last", offsets=None):
    """A reward model's score of sequences: f32[B]. Arguments as `scalar_at_end` (offsets: its offset, the
    prompts' left-padding widths, or None), plus `pool` (POOLS)."""
    if pool == "last":
        return scalar_at_end(graphdef, state, tokens, mask, prompt_len, offsets)
    _, values = forward(graphdef, state, tokens, offsets)
    per_token = jnp.where(mask, values[:, prompt_len:], 0.0)
    total = per_token.sum(axis=1)
    if pool == "sum":
        return total
    if pool == "mean":
        return total / jnp.maximum(mask.sum(axis=1), 1)
    raise ValueError(f"unknown pool {pool!r}; choose from {POOLS}")


@dataclass(frozen=True)
class Comparisons:
    """Arrays of a comparisons set: prompt ++ response tokens of both sides, their masks, the label, and the
    prompts' left-padding widths of each side (None: no prompt is padded)."""

    tokens_a: np.ndarray  # int32[N, P+T]
    mask_a: np.ndarray  # bool[N, T]
    tokens_b: np.ndarray
    mask_b: np.ndarray
    label: np.ndarray  # int8[N]: 1 if a is preferred
    prompt_len: int
    offsets_a: np.ndarray | None = None  # int32[N]
    offsets_b: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def take(self, idx) -> Comparisons:
        return dataclasses.replace(
            self,
            tokens_a=self.tokens_a[idx],
            mask_a=self.mask_a[idx],
            tokens_b=self.tokens_b[idx],
            mask_b=self.mask_b[idx],
            label=self.label[idx],
            offsets_a=None if self.offsets_a is None else self.offsets_a[idx],
            offsets_b=None if self.offsets_b is None else self.offsets_b[idx],
        )

    def split(self, val_frac: float, seed: int) -> tuple[Comparisons, Comparisons]:
        """A fixed random train/validation split (depends only on `seed`)."""
        n = len(self)
        perm = np.random.default_rng(seed).permutation(n)
        n_val = max(1, int(round(val_frac * n)))
        return self.take(np.sort(perm[n_val:])), self.take(np.sort(perm[:n_val]))

    def nested_subsets(self, sizes, seed: int) -> list[Comparisons]:
        """Nested subsets (first m of one fixed permutation) so data size is the only thing that changes."""
        perm = np.random.default_rng(seed).permutation(len(self))
        out = []
        for m in sizes:
            if m > len(self):
                raise ValueError(f"data size {m} exceeds the {len(self)} training comparisons")
            out.append(self.take(perm[:m]))
        return out


def init_states(cfg: ModelConfig, seeds, backbone_state=None):
    """Stacked reward-model states, one per seed. Returns (graphdef, stacked_state)."""
    states = []
    graphdef = None
    for s in seeds:
        model = GPT(cfg, rngs=nnx.Rngs(int(s)), lm_head=False, scalar_head=True)
        graphdef, state = nnx.split(model)
        if backbone_state is not None:
            state = transfer_trunk(state, backbone_state)
        states.append(state)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    return graphdef, stacked


def bt_loss_and_acc(graphdef, state, batch, prompt_len, pool: str = "last"):
    """Mean Bradley-Terry NLL and accuracy of one member on one batch."""
    ta, ma, tb, mb, y, *offsets = batch  # offsets: (of a, of b) with left-padded prompts
    oa, ob = offsets or (None, None)
    ra = reward(graphdef, state, ta, ma, prompt_len, pool, oa)
    rb = reward(graphdef, state, tb, mb, prompt_len, pool, ob)
    sign = 2.0 * y.astype(jnp.float32) - 1.0
    margin = sign * (ra - rb)
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(margin, jnp.ones_like(margin)))
    acc = jnp.mean((margin > 0).astype(jnp.float32) + 0.5 * (margin == 0))
    return loss, acc


def make_optimizer(cfg, total_steps: int):
    warm = max(1, int(cfg.warmup_frac * total_steps))
    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, warm, max(total_steps, warm + 1), cfg.lr * 0.1)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adamw(sched, weight_decay=cfg.weight_decay))


def _device_arrays(data: Comparisons):
    out = (
        jnp.asarray(data.tokens_a, jnp.int32),
        jnp.asarray(data.mask_a, bool),
        jnp.asarray(data.tokens_b, jnp.int32),
        jnp.asarray(data.mask_b, bool),
        jnp.asarray(data.label, jnp.int8),
    )
    if data.offsets_a is None and data.offsets_b is None:
        return out
    offs = [np.zeros(len(data), np.int32) if o is None else o for o in (data.offsets_a, data.offsets_b)]
    return out + tuple(jnp.asarray(o, jnp.int32) for o in offs)


def train_ensemble(
    model_cfg: ModelConfig,
    cfg,
    train: Comparisons,
    val: Comparisons,
    seeds,
    backbone_state=None,
    on_epoch=None,
):
    """Train one reward model per seed, all in one vmapped program.

    Arguments:
      model_cfg: the proxy's size.
      cfg: optimisation settings.
      train, val: comparisons (validation is scored after every epoch).
      seeds: one int per member; a member's init and data order depend only on its seed.
      backbone_state: optional pretrained LM state whose trunk starts every member.
      on_epoch: optional callback(epoch, metrics dict with per-member arrays).
    Returns:
      (graphdef, stacked_state, history) with history a list of per-epoch dicts of float lists.
    """
    seeds = [int(s) for s in seeds]
    k = len(seeds)
    n = len(train)
    bs = min(cfg.batch_size, n)
    n_batches = n // bs
    if n_batches == 0:
        raise ValueError("no training comparisons")
    total = n_batches * cfg.epochs
    # several devices: members split across them (padded with copies of the last); a lone member keeps one device's
    # program (padded copies only repeat its work, and a program vmapped over them rounds differently)
    mesh = meshes.job_mesh() if k > 1 else None
    kp = k if mesh is None else meshes.padded(k, mesh)
    graphdef, states = init_states(model_cfg, seeds + seeds[-1:] * (kp - k), backbone_state)
    opt = make_optimizer(cfg, total)
    opt_states = jax.vmap(opt.init)(states)
    data = _device_arrays(train)
    vdata = _device_arrays(val)
    if mesh is not None:
        states, opt_states = meshes.shard_leading((states, opt_states), mesh)
        data, vdata = meshes.replicate((data, vdata), mesh)
    P = train.prompt_len

    def member_epoch(state, opt_state, order):
        def step(carry, idx):
            st, os_ = carry
            batch = tuple(x[idx] for x in data)
            (loss, acc), grads = jax.value_and_grad(bt_loss_and_acc, argnums=1, has_aux=True)(
                graphdef, st, batch, P, cfg.pool
            )
            updates, os_ = opt.update(grads, os_, st)
            st = optax.apply_updates(st, updates)
            return (st, os_), (loss, acc)

        (state, opt_state), (losses, accs) = jax.lax.scan(step, (state, opt_state), order)
        return state, opt_state, losses.mean(), accs.mean()

    epoch_fn = jax.jit(jax.vmap(member_epoch), donate_argnums=(0, 1))
    eval_fn = jax.jit(jax.vmap(lambda st: bt_loss_and_acc(graphdef, st, vdata, P, cfg.pool)))

    history = []
    for epoch in range(cfg.epochs):
        orders = np.stack(
            [np.random.default_rng([s, epoch]).permutation(n)[: n_batches * bs].reshape(n_batches, bs) for s in seeds]
        )
        orders = jnp.asarray(orders) if mesh is None else meshes.shard_leading(meshes.pad_leading(orders, kp), mesh)
        states, opt_states, tr_loss, tr_acc = epoch_fn(states, opt_states, orders)
        va_loss, va_acc = eval_fn(states)
        if mesh is not None:  # the padding members dropped
            tr_loss, tr_acc, va_loss, va_acc = meshes.unpad(meshes.to_host((tr_loss, tr_acc, va_loss, va_acc)), k)
        row = {
            "epoch": epoch + 1,
            "train/loss": np.asarray(tr_loss).tolist(),
            "train/acc": np.asarray(tr_acc).tolist(),
            "val/loss": np.asarray(va_loss).tolist(),
            "val/acc": np.asarray(va_acc).tolist(),
        }
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
    if mesh is not None:  # the real members, on one device as a one-device run leaves them
        states = jax.device_put(meshes.unpad(meshes.to_host(states), k), jax.local_devices()[0])
    assert k == jax.tree.leaves(states)[0].shape[0]
    return graphdef, states, history


@functools.partial(jax.jit, static_argnames=("prompt_len", "pool"))
def member_scores(graphdef, states, tokens, mask, prompt_len: int, pool: str = "last", offsets=None):
    """Raw scores of every member of a stacked ensemble on one batch: f32[k, B]. Jitted once per
    (graphdef, shapes, prompt_len, pool); the weights are arguments, so any ensemble of one shape reuses it.
    offsets: None or int32[B] left-padding widths of the prompts."""
    return jax.vmap(lambda st: reward(graphdef, st, tokens, mask, prompt_len, pool, offsets))(states)


def score(
    graphdef, states, tokens, mask, prompt_len, batch_size: int = 4096, pool: str = "last", offsets=None
) -> np.ndarray:
    """Scores of every member on sequences: float32[k, N] (raw, before recentring), `batch_size` rows a call;
    offsets: None or int[N] left-padding widths of the prompts."""
    out = []
    mesh = meshes.job_mesh()  # several devices: each chunk's rows split across them (data parallel)
    if mesh is not None:
        states = meshes.replicate(states, mesh)
    for i in range(0, tokens.shape[0], batch_size):
        tok, m = jnp.asarray(tokens[i : i + batch_size]), jnp.asarray(mask[i : i + batch_size])
        off = None if offsets is None else jnp.asarray(offsets[i : i + batch_size], jnp.int32)
        rows = tok.shape[0]
        if mesh is not None:  # rows padded with copies of the last (scored independently, then dropped)
            tok, m, off = meshes.shard_leading(meshes.pad_leading((tok, m, off), meshes.padded(rows, mesh)), mesh)
        s = member_scores(graphdef, states, tok, m, prompt_len=int(prompt_len), pool=pool, offsets=off)
        out.append(np.asarray(s if mesh is None else meshes.to_host(s))[:, :rows])
    return np.concatenate(out, axis=1)
