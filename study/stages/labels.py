"""Stage "labels": pairs of responses sampled from pi_init for fresh prompts, labelled by the gold RM, and
extra pi_init samples for recentring every proxy."""

from __future__ import annotations

import io
import time

import jax
import numpy as np

from core.store import atomic_write_bytes
from gold_rm.labels import label_pairs
from lm.sampling import sample_many
from proxy_rm.train import Comparisons
from study.stages import gold as gold_stage
from study.stages.graph import Slot, Stage

LABEL = "labels"


def expand(cfg) -> list[Slot]:
    return [
        Slot(
            LABEL,
            "labels",
            {"world": "world", "gold": "gold", "labels": "labels"},
            {"policy": "lm"} | gold_stage.inputs(cfg),
        )
    ]


def compute(ctx, run, inst) -> None:
    c = ctx.cfg.labels
    ctx.log("sampling pairs from the initial policy and labelling them with the gold RM")
    t0 = time.time()
    graphdef, state = ctx.output(inst.inputs["policy"])
    rng = np.random.default_rng([c.seed, 3])
    prompts = ctx.world.sample_prompts(rng, c.n_comparisons)
    s = sample_many(
        graphdef,
        state,
        prompts,
        jax.random.PRNGKey(c.seed),
        2,
        max_new=ctx.world.max_new,
        batch_size=4096,
        progress=ctx.progress,
    )
    ta, tb = s.tokens[0::2], s.tokens[1::2]
    ma, mb = s.mask[0::2], s.mask[1::2]
    gold = ctx.gold(inst)
    ga = np.asarray(gold.score(ta, ma), np.float64)
    gb = np.asarray(gold.score(tb, mb), np.float64)
    label = label_pairs(ga, gb, mode=c.mode, temperature=c.temperature, flip_frac=c.flip_frac, rng=rng)
    init_prompts = ctx.world.sample_prompts(rng, c.n_init_samples)
    init = sample_many(
        graphdef, state, init_prompts, jax.random.PRNGKey(c.seed + 1), 1, max_new=ctx.world.max_new, batch_size=4096
    )
    buf = io.BytesIO()
    np.savez_compressed(
        buf, ta=ta, ma=ma, tb=tb, mb=mb, ga=ga, gb=gb, label=label, init_tokens=init.tokens, init_mask=init.mask
    )
    atomic_write_bytes(run.path / "comparisons.npz", buf.getvalue())
    agree = float(np.mean((ga > gb) == (label == 1)))
    run.log({"labels/n": c.n_comparisons, "labels/agree_with_gold": agree, "labels/frac_a": float(label.mean())})
    run.mark_done({"seconds": time.time() - t0})
    ctx.timings["labels"] = time.time() - t0


def load(ctx, run, inst) -> tuple:
    """(Comparisons of all labelled pairs, (init tokens, init mask)) for recentring."""
    with np.load(run.path / "comparisons.npz") as z:
        comps = Comparisons(z["ta"], z["ma"], z["tb"], z["mb"], z["label"], ctx.world.prompt_len)
        init = (z["init_tokens"], z["init_mask"])
    return comps, init


STAGE = Stage(
    "labels",
    reads=("world", "gold", "labels"),
    consumes=("lm", "gold"),
    writes=("comparisons.npz", "metrics.jsonl"),
    expand=expand,
    compute=compute,
    load=load,
    doc="comparisons sampled from pi_init and labelled by the gold RM",
)
