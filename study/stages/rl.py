"""Stage "rl-<size>": PPO against one full-data proxy, a grid of (kl_coef, seed) points in one compiled
program (`rl.runner.run_rl`, resumable, through `run_grid`, which every RL stage shares). The grid `rl.kl_coefs`
x `rl.seeds` is the only source of each point's KL coefficient (`rl.ppo.kl_coef` is read by nothing here). Which
proxies get PPO (`rl.proxies`, `rl.enabled`) only selects instances: it is in no key."""

from __future__ import annotations

import time

import numpy as np

from lm.scorer import Scorer
from rl.runner import run_rl
from study.stages import gold as gold_stage
from study.stages import proxy as proxy_stage
from study.stages.graph import Slot, Stage


def targets(cfg) -> list[tuple[str, str]]:
    """(size name, proxy label) of each proxy that RL optimizers train against: the full-data proxy of each
    size in `rl.proxies` (every size when empty), none when `rl.enabled` is false. The PPO and GRPO stages
    share it."""
    rl = cfg.rl
    if not rl.enabled:
        return []
    out = []
    for i, d in proxy_stage.jobs(cfg):  # the full-data proxy of each size (the data-size sweep gets BoN only)
        name = cfg.ladder.sizes[i].name
        if d is None and (not rl.proxies or name in rl.proxies):
            out.append((name, proxy_stage.label(i, d)))
    return out


def expand(cfg) -> list[Slot]:
    rl = cfg.rl
    if "ppo" not in rl.algos:
        return []
    reads = {
        "ppo": "rl.ppo",
        "kl_coefs": "rl.kl_coefs",
        "seeds": "rl.seeds",
        "prompt_bank": "rl.prompt_bank",
        "prompt_seed": "rl.prompt_seed",
        "world": "world",
        "gold": "gold",
    }
    return [s for s in slots(cfg, "rl", reads) if "objective" not in s.params]  # ensembles: rl_objective.py


def slots(cfg, stage: str, reads: dict) -> list[Slot]:
    """One slot of RL stage `stage` ("rl", "grpo") per target proxy and reward in `rl.objectives`. "single"
    (member 0) has the label `of(stage, proxy)`, the prefix `<stage>-<size>` and no objective in its key (the
    ids from before ensemble objectives); an ensemble objective (issue 35: mean, min, median, uwo over the
    proxy's members, `proxy_rm.ensemble`) adds ":<objective>" / "-<objective>" and the objective as a param,
    and uwo reads its lambda, `bon.uwo_lambda` (best-of-n's: one lambda for both optimizers)."""
    out = []
    for name, p in targets(cfg):
        inputs = {"policy": "lm", "proxy": p, "pool": "pool"} | gold_stage.inputs(cfg)
        for o in cfg.rl.objectives:
            if o == "single":
                out.append(Slot(proxy_stage.of(stage, p), f"{stage}-{name}", reads, inputs))
                continue
            r = reads | ({"uwo_lambda": "bon.uwo_lambda"} if o == "uwo" else {})
            out.append(Slot(f"{proxy_stage.of(stage, p)}:{o}", f"{stage}-{name}-{o}", r, inputs, {"objective": o}))
    return out


def objective_columns(inst, proxy) -> dict:
    """The points columns of an instance's reward: `objective` ("single" or the ensemble objective), and for
    an ensemble objective `ensemble_size` (as best-of-n's ensemble rows carry it)."""
    o = inst.params.get("objective", "single")
    return {"objective": o} if o == "single" else {"objective": o, "ensemble_size": len(proxy.seeds)}


def reward_scorer(ctx, proxy, objective: str = "single") -> Scorer:
    """The proxy's recentred score (member 0, or an ensemble objective): a pure function of its weights,
    which the PPO program takes as an argument (one compiled program serves every proxy of a shape)."""
    return Scorer(*proxy.reward_scorer(objective, lam=ctx.cfg.bon.uwo_lambda, prompt_len=ctx.world.prompt_len))


def gold_scorer(ctx, inst, pool) -> Scorer:
    """Gold score and weighted component terms (they add up to the score), recentred so that the initial
    policy's mean of each over the BoN pool is 0."""
    return Scorer(*ctx.gold(inst).scorer({k: np.mean(v, dtype=np.float64) for k, v in pool.gold.items()}))


def run_grid(ctx, run, inst, cfg, kl_coefs, name: str) -> None:
    """Train optimizer config `cfg` (`rl.runner.run_rl` picks the optimizer by its class) over the grid
    `kl_coefs` x `rl.seeds` into `run`, against the instance's proxy (its objective: `objective_columns`), with
    the gold recentred on the pool; points carry the proxy's size, name and data size, the objective and the run
    id. The RL stages (rl, rl_objective, grpo, cppo) share it; `name` names the optimizer in the log."""
    rl = ctx.cfg.rl
    grid = [(float(k), int(s)) for k in kl_coefs for s in rl.seeds]
    bank = ctx.world.sample_prompts(np.random.default_rng([rl.prompt_seed, 5]), rl.prompt_bank)
    proxy = ctx.output(inst.inputs["proxy"])
    cols = objective_columns(inst, proxy)
    ctx.log(f"{name} against {proxy.size.name} ({cols['objective']}): a grid of {len(grid)} (kl_coef, seed) points")
    t0 = time.time()
    run_rl(
        run,
        ctx.output(inst.inputs["policy"]),
        reward_scorer(ctx, proxy, cols["objective"]),
        gold_scorer(ctx, inst, ctx.output(inst.inputs["pool"])),
        bank,
        cfg,
        grid,
        rm_params=proxy.rm_params,
        extra={"rm_name": proxy.size.name, "data_size": proxy.data_size, **cols, "run_id": run.id},
        progress=ctx.progress,
    )
    ctx.timings[run.path.name.rsplit("-", 1)[0]] = time.time() - t0
    ctx.log(f"  {proxy.size.name}: {cfg.updates} updates x {len(grid)} grid points, {time.time() - t0:.1f}s")


def compute(ctx, run, inst) -> None:
    run_grid(ctx, run, inst, ctx.cfg.rl.ppo, ctx.cfg.rl.kl_coefs, "PPO")


def load(ctx, run, inst):
    return run


STAGE = Stage(
    "rl",
    reads=("rl.ppo", "rl.kl_coefs", "rl.seeds", "rl.prompt_bank", "rl.prompt_seed", "world", "gold"),
    consumes=("lm", "proxy", "pool", "gold"),
    writes=("points.parquet", "metrics.jsonl", "checkpoints/"),
    expand=expand,
    compute=compute,
    load=load,
    exclude=("rl.ppo.kl_coef",),
    doc="PPO against each full-data proxy over the (kl_coef, seed) grid",
)
