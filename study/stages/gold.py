"""Stage "gold": the learned gold (`GoldConfig.kind` "learned"), trained on the formula gold's preferences over
the initial policy's samples, hotter samples and edited responses (`gold_rm.learned_train`), then frozen; the
labels, pool and rl stages consume it. With kind "formula" (the default) it has no instance: consumers build
the formula gold from the config (`gold_rm.factory.make_gold`).

gold.json: its size, data and its agreement with the hand-written preference on held-out pairs of its own
training distribution and on off-distribution pairs (the finish step copies it to DIR/gold.json)."""

from __future__ import annotations

import time

from core.store import atomic_write_json
from gold_rm.factory import make_gold
from gold_rm.learned_train import train_learned_gold
from study.stages.graph import Slot, Stage

LABEL = "gold"
REPORT = "gold.json"


def expand(cfg) -> list[Slot]:
    if cfg.gold.kind != "learned":
        return []
    return [Slot(LABEL, "gold", {"world": "world", "gold": "gold"}, {"policy": "lm"})]


def inputs(cfg) -> dict:
    """The gold input of a consumer (labels, pool, rl): {"gold": "gold"} with a learned gold, else {}."""
    return {"gold": LABEL} if cfg.gold.kind == "learned" else {}


def compute(ctx, run, inst) -> None:
    c = ctx.cfg.gold.learned
    ctx.log(f"training the learned gold ({c.n_layer}x{c.d_model}) on {c.n_pairs} formula-labelled pairs")
    t0 = time.time()
    gold, report = train_learned_gold(ctx.world, ctx.formula, ctx.output(inst.inputs["policy"]), c, ctx.cfg.gold.seed)
    gold.save(run.path)
    for row in report["history"]:
        run.log({k: v[0] for k, v in row.items() if k != "epoch"}, step=row["epoch"])
    atomic_write_json(run.path / REPORT, report | {"run_id": run.id})
    run.mark_done({"seconds": time.time() - t0})
    ctx.timings["gold"] = time.time() - t0
    off = ", ".join(f"{k} {v['agreement']:.3f}" for k, v in report["off_distribution"].items())
    ctx.log(f"  learned gold: agreement {report['heldout']['agreement']:.3f} held out; {off}")


def load(ctx, run, inst):
    """The frozen `gold_rm.learned.LearnedGold`."""
    return make_gold(ctx.world, ctx.cfg.gold, learned_dir=run.path, formula=ctx.formula)


STAGE = Stage(
    "gold",
    reads=("world", "gold"),
    consumes=("lm",),
    writes=("state/", "learned.json", REPORT, "metrics.jsonl"),
    expand=expand,
    compute=compute,
    load=load,
    doc="the learned gold, trained on the formula gold's preferences (gold.kind = learned only)",
)
