"""Stage "klsplit-<size>": RL's KL split by the tokens it is spent on (issue 31; `probes.kl_split`), after RL.

For each grid point of an rl-<size> run, the evaluation samples of its policy at the last checkpoint
(`rl.final_samples`, the same draw as the last evaluation row) and the per-token log-probs of that
policy and of the reference on them; the k1 KL of each token class (task tokens the gold's task term judges,
extra content, FLATTER, bank markers, EOS), "judged" (= task), "rest" and "total". Rows join the probes table
(probe "kl_split") in DIR/probes.json. Seconds per proxy: one evaluation and two teacher-forced passes."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from core.store import atomic_write_parquet
from probes.kl_split import CLASSES, kl_split
from rl.final_samples import final_samples
from study.stages import rl as rl_stage
from study.stages.graph import Slot, Stage
from study.stages.proxy import of

TABLE = "kl_split.parquet"


def expand(cfg) -> list[Slot]:
    return [
        Slot(of("klsplit", s.inputs["proxy"]), "klsplit-" + s.prefix[3:], s.reads, s.inputs | {"rl": s.label})
        for s in rl_stage.expand(cfg)
    ]


def compute(ctx, run, inst) -> None:
    t0 = time.time()
    rl = ctx.cfg.rl
    grid = [(float(k), int(s)) for k in rl.kl_coefs for s in rl.seeds]
    bank = ctx.world.sample_prompts(np.random.default_rng([rl.prompt_seed, 5]), rl.prompt_bank)
    proxy = ctx.output(inst.inputs["proxy"])
    policy = ctx.output(inst.inputs["policy"])
    rl_run = ctx.output(inst.inputs["rl"])
    samples = final_samples(
        rl_run.path,
        policy,
        rl_stage.reward_scorer(ctx, proxy),
        rl_stage.gold_scorer(ctx, inst, ctx.output(inst.inputs["pool"])),
        bank,
        rl.ppo,
        grid,
        ctx.world.canon if ctx.world.cfg.variants > 1 else None,
    )
    const = {
        "probe": "kl_split",
        "move": "kl_split",
        "kind": "kl_split",
        "rm_name": proxy.size.name,
        "rm_params": proxy.rm_params,
        "data_size": proxy.data_size,
        "run_id": run.id,
    }
    rows = []
    for s in samples:
        groups = (s.get("logp_group"), s.get("logp_ref_group"))
        split = kl_split(s["logp"], s["logp_ref"], s["tokens"], s["mask"], ctx.world, *groups)
        ev = {"eval_kl": s["eval"].get("objective/kl"), "eval_gold": s["eval"].get("gold/score")}
        rows.append(const | {"kl_coef": s["kl_coef"], "seed": s["seed"], "step": s["step"]} | split | ev)
    atomic_write_parquet(run.file(TABLE), pd.DataFrame(rows))
    run.mark_done({"seconds": time.time() - t0})
    ctx.timings[f"klsplit-{proxy.size.name}"] = time.time() - t0
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("judged", "rest", "total")}
    ctx.log(
        f"  {proxy.size.name}: KL on judged tokens {mean['judged']:.2f}, "
        f"rest {mean['rest']:.2f} (of {mean['total']:.2f})"
    )


def load(ctx, run, inst):
    return run


STAGE = Stage(
    "klsplit",
    reads=rl_stage.STAGE.reads,
    consumes=("lm", "proxy", "pool", "gold", "rl"),
    writes=(TABLE,),
    expand=expand,
    compute=compute,
    load=load,
    exclude=("rl.ppo.kl_coef",),
    doc=f"RL's KL split by token class ({', '.join(CLASSES)}) at each run's last checkpoint",
)
