"""Matmul FLOPs and sequential work of every stage of a study config (`stages(cfg)`), for the cost estimate of
`benchmarks.paper_cost`, and the memory of its best-of-n pool (`pool_memory(cfg)`).

FLOPs are counted as in `benchmarks.bench_ceiling` (whose counts `tests/test_benchmarks.py` checks against
the traced programs): 2 per multiply-add, matrix products only; a block on n query tokens with k keys costs
n (24 d^2 + 4 k d) (2 x params plus attention over every key multiplied); training = 3 forwards (6 x params x
tokens plus attention); sampling = a prefill of P tokens and T - 1 decode steps over a cache of P + T - 1;
LM head 2 V d where logits are computed, scalar head 2 d. Gold scoring (bigram look-ups, counts, a tiny MLP)
has no matrix products worth counting. What each stage runs is read from the pipeline (`study.pipeline`):
pretraining (the policy, and a backbone per proxy size of another shape, each with the policy's pretraining
settings and held-out evaluations), the labels (2 responses a comparison plus the recentring samples), every
proxy (the ensemble's members, its epochs, validation after each epoch and at the end, the recentring
samples; the data-size proxies too), the pool, its scoring by every member of every proxy, the reference
log-probs of the pool when selection rules are on (issue 24; the select-<size> stages' host work is not
counted), and PPO against every full-data proxy (the whole kl_coef x seed grid, every update and evaluation).
"""

from __future__ import annotations

import dataclasses
import math

from benchmarks.bench_ceiling import ppo_update_flops, rm_train_flops, trunk_flops
from benchmarks.common import Arch

SAMPLE_BATCH = 4096  # the sample_many / score chunk of the study's stages (labels, pool, bon)


@dataclasses.dataclass
class Stage:
    """One stage of a study: its kind (what calibrates it), matmul FLOPs, and the sequential work that bounds
    it on an accelerator (layer passes, optimizer steps or dispatches, compiled programs)."""

    name: str
    kind: str  # pretrain | sampling | proxy | scoring | ppo
    flops: float
    layer_passes: float = 0.0
    steps: float = 0.0
    programs: tuple = ()  # the compiled programs this stage is the first to need: "ppo", "step" or "fwd"
    backbone: str | None = None  # the "lm" timing a measured proxy stage includes (its backbone ran inside it)


def arch(n_layer: int, d_model: int, n_head: int) -> Arch:
    return Arch(n_layer, d_model, n_head)


def lm_forward(a: Arch, n_seq: int, s: int, vocab: int) -> int:
    """Teacher-forced LM pass on tokens[:, :-1] of n_seq sequences of length s, logits at every position."""
    n = n_seq * (s - 1)
    return trunk_flops(a, n, s - 1) + n * 2 * vocab * a.d_model


def rm_forward(a: Arch, n_seq: int, s: int) -> int:
    """Reward-model pass on n_seq whole sequences, the scalar head at every position."""
    n = n_seq * s
    return trunk_flops(a, n, s) + n * 2 * a.d_model


def sample_flops(a: Arch, n: int, p: int, t: int, vocab: int) -> int:
    """n responses of t tokens: a prefill of p tokens and t - 1 decode steps over a cache of p + t - 1."""
    cache, lm = p + t - 1, 2 * vocab * a.d_model
    return trunk_flops(a, n * p, cache) + n * lm + trunk_flops(a, n * (t - 1), cache) + n * (t - 1) * lm


def pretrain_stage(name: str, a: Arch, cfg, s: int, vocab: int) -> Stage:
    pre = cfg.policy.pretrain
    n = cfg.policy.corpus_size
    n_eval = min(n - 1, max(1, round(n * pre.eval_frac))) if pre.eval_frac > 0 else 0
    logs = pre.steps // pre.log_every + (pre.steps % pre.log_every != 0)
    eval_calls = logs * math.ceil(n_eval / max(pre.batch_size, 256))
    flops = pre.steps * 3 * lm_forward(a, pre.batch_size, s, vocab) + logs * lm_forward(a, n_eval, s, vocab)
    passes = pre.steps * 3 * a.n_layer + eval_calls * a.n_layer
    return Stage(name, "pretrain", flops, passes, 2 * pre.steps + eval_calls, ("step", "fwd"))


def stages(cfg) -> list[Stage]:
    """Every stage of a study config, in pipeline order (issue 24's select-<size> host work is not counted)."""
    from gold_rm.world import World
    from study.config import n_train_comparisons

    w = World(cfg.world)
    p, t, s, v = w.prompt_len, w.max_new, w.seq_len, w.vocab_size
    pol = arch(cfg.policy.n_layer, cfg.policy.d_model, cfg.policy.n_head)
    lad, bon, rl = cfg.ladder, cfg.bon, cfg.rl
    out = [pretrain_stage(f"lm-{pol.n_layer}x{pol.d_model} (policy)", pol, cfg, s, v)]
    n_lab = 2 * cfg.labels.n_comparisons
    batches = math.ceil(n_lab / SAMPLE_BATCH) + math.ceil(cfg.labels.n_init_samples / SAMPLE_BATCH)
    out.append(
        Stage(
            "labels",
            "sampling",
            sample_flops(pol, n_lab + cfg.labels.n_init_samples, p, t, v),
            batches * t * pol.n_layer,
            batches,
            ("fwd",) * 3,  # two sampling chunk shapes, the gold
        )
    )
    archs = {z.name: arch(z.n_layer, z.d_model, z.n_head) for z in lad.sizes}
    if lad.backbone:
        for z in lad.sizes:
            a = archs[z.name]
            if a != pol:  # a backbone of the policy's size is the policy's own "lm" stage
                out.append(pretrain_stage(f"lm-{a.n_layer}x{a.d_model} (backbone {z.name})", a, cfg, s, v))
    n_full = n_train_comparisons(cfg)
    n_val = cfg.labels.n_comparisons - n_full
    tr, k = lad.train, lad.ensemble_size
    jobs = [(z.name, None) for z in lad.sizes]
    for z in lad.sizes:
        if not lad.data_sweep_sizes or z.name in lad.data_sweep_sizes:
            jobs += [(z.name, d) for d in lad.data_sizes if d != n_full]
    n_pool = bon.n_prompts * bon.pool_size
    for name, data in jobs:
        a, n = archs[name], data or n_full
        bs = min(tr.batch_size, n)  # as proxy_rm.train.train_ensemble
        steps = tr.epochs * (n // bs)
        evals = (tr.epochs + 1) * rm_forward(a, 2 * n_val, s) + rm_forward(a, cfg.labels.n_init_samples, s)
        flops = k * (steps * rm_train_flops(a, bs, s) + evals)
        label = f"proxy-{name}" + (f"-{data}" if data else "")
        inside = f"lm-{a.n_layer}x{a.d_model}" if lad.backbone and data is None and a != pol else None
        comp = ("step", "fwd", "fwd") if data is None else ("step", "fwd")  # epoch scan, validation, scoring
        out.append(Stage(label, "proxy", flops, steps * 3 * a.n_layer, steps, comp, backbone=inside))
    out.append(
        Stage(
            "pool",
            "sampling",
            sample_flops(pol, n_pool, p, t, v),
            math.ceil(n_pool / SAMPLE_BATCH) * t * pol.n_layer,
            math.ceil(n_pool / SAMPLE_BATCH),
            ("fwd", "fwd"),  # sampling, the gold
        )
    )
    chunks = math.ceil(n_pool / SAMPLE_BATCH)
    for name, data in jobs:
        a = archs[name]
        label = f"bon-{name}" + (f"-{data}" if data else "")
        # scoring the pool: since the declared stage graph, the score-<size> stage does it once for bon-* and
        # select-* (named bon-* here, as the measured timings paper_cost calibrates on are). Its program (chunks
        # of 4096) was compiled by the proxy's own stage. pi_init's log-prob of each pool response comes with
        # the pool's sampling (no teacher-forced pass).
        out.append(Stage(label, "scoring", k * rm_forward(a, n_pool, s), chunks * a.n_layer, chunks))
    if rl.enabled:
        from rl.ppo_config import eval_steps

        ppo = rl.ppo
        grid = len(rl.kl_coefs) * len(rl.seeds)
        n_evals = len(eval_steps(ppo)) + 1  # and step 0
        b = ppo.eval_batch
        lm = 2 * v * pol.d_model
        teacher = trunk_flops(pol, b * (s - 1), s - 1) + b * t * lm
        for name in rl.proxies or [z.name for z in lad.sizes]:
            a = archs[name]
            update = ppo_update_flops(pol, a, ppo.batch_size, t, ppo.epochs, p, v)
            evaluate = sample_flops(pol, b, p, t, v) + 2 * teacher + b * t * 2 * pol.d_model + rm_forward(a, b, s)
            flops = grid * (ppo.updates * update + n_evals * evaluate)
            fwd = t * pol.n_layer + 2 * pol.n_layer + a.n_layer  # rollout, policy and reference, reward
            passes = ppo.updates * (fwd + ppo.epochs * ppo.minibatches * 3 * pol.n_layer) + n_evals * fwd
            steps = ppo.updates * ppo.epochs * ppo.minibatches + ppo.updates // ppo.eval_every + n_evals
            comp = ("ppo", "fwd", "fwd")  # the grid chunk, init and evaluation
            out.append(Stage(f"rl-{name}", "ppo", flops, passes, steps, comp))
    return out


def pool_memory(cfg) -> dict:
    """Bytes of the best-of-n pool on the host (bon.pools.Pool: uint8 tokens, bool mask, float32 gold terms) and
    while a proxy scores it (an int32 copy, float64 recentred scores), and of one chunk on the device."""
    from gold_rm.gold import COMPONENTS
    from gold_rm.world import World

    w = World(cfg.world)
    n = cfg.bon.n_prompts * cfg.bon.pool_size
    s, t, k = w.seq_len, w.max_new, cfg.ladder.ensemble_size
    big = max(cfg.ladder.sizes, key=lambda z: z.d_model * z.n_layer)
    pol = cfg.policy
    hidden = s * 4 * big.d_model * 4 * k  # one sequence's MLP activations, float32, every member (vmapped)
    return {
        "pool responses": n,
        "tokens uint8 + mask (host)": n * (s + t),
        "gold score and terms, float32 (host)": n * 4 * (len(COMPONENTS) + 1),
        "int32 copy of the tokens for scoring (host)": n * 4 * s,
        f"one proxy's scores, float64, {k} members (host)": n * 8 * k,
        f"a scoring chunk of {SAMPLE_BATCH}: {big.name} MLP activations (device)": SAMPLE_BATCH * hidden,
        f"a sampling chunk of {SAMPLE_BATCH}: the policy's KV cache (device)": SAMPLE_BATCH
        * pol.n_layer
        * 2
        * (s - 1)
        * pol.d_model
        * 4,
        f"the whole pool in one scoring call: {big.name} MLP activations (why it is chunked)": n * hidden,
    }
