"""Benchmark: reward-model (Bradley-Terry) training, comparisons (pairs) per second.

ours: the step `proxy_rm.train.train_ensemble` runs: `bt_loss_and_acc` (scalar head read at each
response's last token, -log sigmoid of the signed margin), AdamW with global-norm clipping and the
warm-up/cosine schedule of `make_optimizer`, `steps` of them in one `lax.scan`, vmapped over a
one-member ensemble and jitted with donated buffers, exactly as `train_ensemble` builds its epoch
(rebuilt here because `train_ensemble` compiles a fresh program on every call).
peer: the same step in PyTorch: Hugging Face `GPT2Model` of the same size plus `nn.Linear(d, 1)`,
both sides of a batch in one forward, the same loss, `torch.optim.AdamW` with `clip_grad_norm_` and
the same schedule (`LambdaLR`), eager mode.

Identical: layers, width, heads, vocabulary, positions, prompt and response lengths, batch of pairs,
steps per timed call (parameter counts checked equal). Pairs per second = steps * batch / median seconds.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.common import LARGEST_SMALL_PROXY, MAX_NEW, MIDDLE_PROXY, PROMPT_LEN, SHRUNK


def cases(quick: bool) -> list[tuple[common.Arch, int, int]]:
    """(size, pairs per batch, steps per timed call) of each row."""
    return common.pick(
        quick,
        full=[(MIDDLE_PROXY, 64, 20), (LARGEST_SMALL_PROXY, 64, 20)],
        quick_value=[(MIDDLE_PROXY, 64, 10), (LARGEST_SMALL_PROXY, 64, 10)],
        tiny_value=[(SHRUNK, 4, 2)],
    )


@functools.cache
def comparisons(n: int, seed: int = 0):
    """n random comparisons sharing a prompt: (tokens_a, mask_a, tokens_b, mask_b, label int8)."""
    rng = np.random.default_rng(seed)
    p = common.prompts(n, rng)
    ta, ma = common.responses(p, rng)
    tb, mb = common.responses(p, rng)
    return ta, ma, tb, mb, rng.integers(0, 2, n).astype(np.int8)


def train_config():
    from proxy_rm.train import ProxyTrainConfig

    return ProxyTrainConfig(batch_size=64, lr=1e-3)


@functools.cache
def ours_step_fn(arch: common.Arch, batch: int, steps: int):
    """A blocking call that runs `steps` Bradley-Terry steps of our trainer (state carried across calls;
    cached: the ceiling benchmark reuses the compiled program)."""
    import optax

    from proxy_rm.train import bt_loss_and_acc, init_states, make_optimizer, rm_params

    cfg = common.model_config(arch)
    graphdef, states = init_states(cfg, [0])
    assert rm_params(cfg) == sum(x.size for x in jax.tree.leaves(states))
    opt = make_optimizer(train_config(), total_steps=10_000)
    opt_states = jax.vmap(opt.init)(states)
    arrays = tuple(jnp.asarray(x) for x in comparisons(steps * batch))

    def member_epoch(state, opt_state, order):  # as in proxy_rm.train.train_ensemble
        def step(carry, idx):
            st, os_ = carry
            b = tuple(x[idx] for x in arrays)
            (loss, acc), grads = jax.value_and_grad(bt_loss_and_acc, argnums=1, has_aux=True)(
                graphdef, st, b, PROMPT_LEN
            )
            updates, os_ = opt.update(grads, os_, st)
            return (optax.apply_updates(st, updates), os_), (loss, acc)

        (state, opt_state), (losses, accs) = jax.lax.scan(step, (state, opt_state), order)
        return state, opt_state, losses.mean(), accs.mean()

    epoch = jax.jit(jax.vmap(member_epoch), donate_argnums=(0, 1))
    n = steps * batch
    orders = jnp.asarray(np.random.default_rng(1).permutation(n)[: steps * batch].reshape(1, steps, batch))
    carry = [states, opt_states]

    def call():
        carry[0], carry[1], loss, _ = epoch(carry[0], carry[1], orders)
        jax.block_until_ready(loss)

    return call


def peer_step_fn(arch: common.Arch, batch: int, steps: int):
    """A call that runs `steps` of the same Bradley-Terry steps in PyTorch."""
    torch = common.torch_setup()
    from transformers import GPT2Model

    from proxy_rm.train import rm_params

    cfg = train_config()
    trunk = GPT2Model(common.gpt2_config(arch))
    head = torch.nn.Linear(arch.d_model, 1)
    model = torch.nn.ModuleDict({"trunk": trunk, "head": head}).train()
    common.check_same_size(rm_params(common.model_config(arch)), model)
    total, warm = 10_000, max(1, int(cfg.warmup_frac * 10_000))

    def schedule(step):  # optax.warmup_cosine_decay_schedule(0, lr, warm, total, 0.1 lr) / lr
        if step < warm:
            return step / warm
        frac = min((step - warm) / (total - warm), 1.0)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac))

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    ta, ma, tb, mb, y = (torch.as_tensor(x) for x in comparisons(steps * batch))
    ta, tb = ta.long(), tb.long()
    # The last response token (EOS, or the last of a truncated response), as scalar_at_end reads it.
    last_a = (PROMPT_LEN + ma.sum(1) - 1).clamp(min=PROMPT_LEN - 1)
    last_b = (PROMPT_LEN + mb.sum(1) - 1).clamp(min=PROMPT_LEN - 1)
    sign = 2.0 * y.float() - 1.0
    order = torch.as_tensor(np.random.default_rng(1).permutation(ta.shape[0])[: steps * batch].reshape(steps, batch))
    rows = torch.arange(2 * batch)

    def step(idx):
        tokens = torch.cat([ta[idx], tb[idx]])
        last = torch.cat([last_a[idx], last_b[idx]])
        h = trunk(input_ids=tokens).last_hidden_state
        r = head(h[rows, last])[:, 0]
        margin = sign[idx] * (r[:batch] - r[batch:])
        loss = -torch.nn.functional.logsigmoid(margin).mean()
        acc = ((margin > 0).float() + 0.5 * (margin == 0).float()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        return loss.detach(), acc

    def call():
        for i in range(steps):
            step(order[i])

    return call


def rows(quick: bool) -> list[dict]:
    """One row per size: Bradley-Terry training pairs per second, ours and the peer."""
    repeat = common.pick(quick, 5, 3, 1)
    out = []
    for arch, batch, steps in cases(quick):
        ours, peer = common.median_seconds(
            ours_step_fn(arch, batch, steps), peer_step_fn(arch, batch, steps), repeat=repeat
        )
        n = steps * batch
        out.append(
            common.row(
                f"RM training {arch.label()} B={batch}",
                n / ours,
                n / peer,
                "pairs/s",
                f"V={common.VOCAB} P={PROMPT_LEN} T={MAX_NEW}, {steps} steps a call; peer: "
                "torch GPT2Model + linear head, AdamW, eager",
            )
        )
    return out


if __name__ == "__main__":
    import sys

    for r in rows("--quick" in sys.argv):
        print(r)
