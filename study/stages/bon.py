"""Stage "bon-<size>": best-of-n points of one proxy (and of its ensemble objectives) on the pool, from the
unbiased order-statistic estimator, with the per-prompt rows (`bon_prompts.parquet`)."""

from __future__ import annotations

from bon.pools import bon_points_for_proxy, recentred
from core.store import atomic_write_parquet
from lm.model import param_count
from scaling.points import BON_PROMPTS
from study.stages import lm as lm_stage
from study.stages import proxy as proxy_stage
from study.stages.graph import Slot, Stage


def optimizer_inputs(proxy_label: str) -> dict:
    return {"pool": "pool", "scores": proxy_stage.of("score", proxy_label), "proxy": proxy_label, "policy": "lm"}


def expand(cfg) -> list[Slot]:
    reads = {"objectives": "bon.objectives", "uwo_lambda": "bon.uwo_lambda"}
    return proxy_stage.per_proxy(cfg, "bon", reads, optimizer_inputs)


def policy_params(ctx, inst) -> int:
    """pi_init's parameter count (the points' `policy_params`), from the lm instance this one consumes."""
    return param_count(lm_stage.model_config(ctx, inst.inputs["policy"]))


def compute(ctx, run, inst) -> None:
    pool = recentred(ctx.output(inst.inputs["pool"]))
    proxy = ctx.output(inst.inputs["proxy"])
    df, per_prompt = bon_points_for_proxy(
        pool,
        ctx.output(inst.inputs["scores"]),
        ctx.cfg.bon,
        with_prompts=True,
        rm_name=proxy.size.name,
        rm_params=proxy.rm_params,
        data_size=proxy.data_size,
        seed=proxy.seeds[0],
        run_id=run.id,
        policy_params=policy_params(ctx, inst),
    )
    atomic_write_parquet(run.path / BON_PROMPTS, per_prompt)
    run.write_points(df)
    run.mark_done()


def load(ctx, run, inst):
    return run


STAGE = Stage(
    "bon",
    reads=("bon.objectives", "bon.uwo_lambda"),
    consumes=("pool", "score", "proxy", "lm"),
    writes=("points.parquet", BON_PROMPTS),
    expand=expand,
    compute=compute,
    load=load,
    doc="best-of-n points of each proxy and ensemble objective on the pool",
)
