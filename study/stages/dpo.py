"""Stage "dpo" (optional: "dpo", "ipo" or "slic" in `rl.algos`): direct alignment (direct.train) trained
offline on the study's gold-labelled comparisons (the proxies' training split: `ladder.train.val_frac`,
`ladder.seed`), one instance (run "<algo>-...") per loss, a grid `rl.direct_betas` x `rl.seeds` in one
compiled program, settings `rl.direct` (its loss and max_new are the instance's and the world's).

No reward model is trained on or optimized: the proxy score in its points is that of the largest RL target
proxy (member 0, `study.stages.rl.targets`; named in `rm_name`, its size in `proxy_rm_params`), measured on
fresh samples beside gold. Its points carry `rm_params` empty (no proxy is optimized: the fits give one curve
per beta), algo, beta_dpo, step and epoch. Needs a target proxy (`rl.enabled`)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from flax import nnx

from direct.train import points_from_rows, train_direct
from lm import model as gpt
from study.stages import rl as rl_stage
from study.stages.graph import Slot, Stage

DIRECT_ALGOS = ("dpo", "ipo", "slic")
READS = (
    "rl.direct",
    "rl.direct_betas",
    "rl.seeds",
    "rl.prompt_bank",
    "rl.prompt_seed",
    "ladder.train.val_frac",
    "ladder.seed",
    "world",
    "gold",
)


def expand(cfg) -> list[Slot]:
    targets = rl_stage.targets(cfg)
    if not targets:
        return []
    base = rl_stage.slots(cfg, "dpo", {})[0]  # its inputs: policy, pool, gold; the proxy is the last target
    inputs = {**base.inputs, "proxy": targets[-1][1], "labels": "labels"}
    reads = {path.split(".", 1)[-1].replace(".", "_"): path for path in READS}
    return [Slot(f"dpo:{a}", a, reads, inputs, {"algo": a}) for a in DIRECT_ALGOS if a in cfg.rl.algos]


def compute(ctx, run, inst) -> None:
    rl, lad = ctx.cfg.rl, ctx.cfg.ladder
    algo = inst.params["algo"]
    comps, _ = ctx.output(inst.inputs["labels"])
    train, _ = comps.split(lad.train.val_frac, seed=lad.seed)
    cfg = dataclasses.replace(rl.direct, loss=algo, max_new=ctx.world.max_new)
    grid = [(float(b), int(s)) for b in rl.direct_betas for s in rl.seeds]
    bank = ctx.world.sample_prompts(np.random.default_rng([rl.prompt_seed, 5]), rl.prompt_bank)
    policy = ctx.output(inst.inputs["policy"])
    proxy = ctx.output(inst.inputs["proxy"])
    n = len(train) if cfg.max_pairs is None else min(cfg.max_pairs, len(train))
    ctx.log(f"{algo.upper()} on {n} comparisons: a grid of {len(grid)} (beta, seed) points, {cfg.epochs} epochs")
    t0 = time.time()
    run.reset_metrics()
    rows = train_direct(
        policy,
        rl_stage.reward_scorer(ctx, proxy),
        rl_stage.gold_scorer(ctx, inst, ctx.output(inst.inputs["pool"])),
        train,
        bank,
        cfg,
        grid,
        log=run.log,
    )
    pcfg = nnx.merge(*policy).cfg
    extra = {"rm_params": None, "rm_name": proxy.size.name, "proxy_rm_params": proxy.rm_params, "data_size": n}
    pts = points_from_rows(rows, algo, gpt.param_count(pcfg, lm_head=True), {**extra, "run_id": run.id})
    run.write_points(pts)
    run.mark_done({"seconds": time.time() - t0, "grid": [list(g) for g in grid]})
    ctx.timings[run.path.name.rsplit("-", 1)[0]] = time.time() - t0
    ctx.log(f"  {algo}: {len(rows)} rows, {time.time() - t0:.1f}s")


def load(ctx, run, inst):
    return run


STAGE = Stage(
    "dpo",
    reads=READS,
    consumes=("lm", "labels", "proxy", "pool", "gold"),
    writes=("points.parquet", "metrics.jsonl"),
    expand=expand,
    compute=compute,
    load=load,
    exclude=("rl.direct.loss", "rl.direct.max_new", "rl.direct.beta"),
    doc="DPO / IPO / SLiC on the gold-labelled comparisons over the (beta, seed) grid (with them in rl.algos)",
)
