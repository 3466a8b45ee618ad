"""Stage "proxy-<size>": one rung of the proxy ladder (an ensemble of `ladder.ensemble_size` seeds) trained
with the Bradley-Terry loss on the labelled comparisons, on all training pairs or on a nested subset (the
data-size sweep); with `ladder.backbone`, started from an LM of its size pretrained on the base corpus."""

from __future__ import annotations

import time

import numpy as np

from proxy_rm.ladder import load_proxy, save_proxy, train_proxy
from study.config import n_train_comparisons
from study.stages.graph import Slot, Stage
from study.stages.lm import backbone_label


def label(i: int, data_size: int | None) -> str:
    return f"proxy[{i}]" + (f"@{data_size}" if data_size is not None else "")


def jobs(cfg) -> list[tuple[int, int | None]]:
    """(index of the size in ladder.sizes, data size or None) of every proxy the study trains. A data size
    equal to the whole training split is the full-data proxy itself: not trained twice."""
    lad = cfg.ladder
    n_full = n_train_comparisons(cfg)
    out = [(i, None) for i in range(len(lad.sizes))]
    for i, s in enumerate(lad.sizes):
        if lad.data_sweep_sizes and s.name not in lad.data_sweep_sizes:
            continue
        out += [(i, d) for d in lad.data_sizes if d != n_full]
    return out


def of(stage: str, proxy_label: str) -> str:
    """The label of `stage`'s instance for one proxy, e.g. "score:proxy[1]"."""
    return f"{stage}:{proxy_label}"


def per_proxy(cfg, stage: str, reads: dict, inputs) -> list[Slot]:
    """One slot of `stage` per proxy the study trains: label `of(stage, proxy label)`, run prefix
    "<stage>-<size name>", the given reads, and `inputs(proxy_label)` -> role -> label."""
    return [
        Slot(of(stage, label(i, d)), f"{stage}-{cfg.ladder.sizes[i].name}", reads, inputs(label(i, d)))
        for i, d in jobs(cfg)
    ]


def expand(cfg) -> list[Slot]:
    out = []
    for i, d in jobs(cfg):
        inputs = {"labels": "labels"} | ({"backbone": backbone_label(i)} if cfg.ladder.backbone else {})
        reads = {
            "size": f"ladder.sizes[{i}]",
            "ensemble_size": "ladder.ensemble_size",
            "backbone": "ladder.backbone",
            "train": "ladder.train",
            "seed": "ladder.seed",
            "world": "world",
        }
        out.append(Slot(label(i, d), f"proxy-{cfg.ladder.sizes[i].name}", reads, inputs, {"data_size": d}))
    return out


def compute(ctx, run, inst) -> None:
    lad = ctx.cfg.ladder
    size = ctx.value(inst.reads["size"])
    data_size = inst.params["data_size"]
    comps, init = ctx.output(inst.inputs["labels"])
    train_all, val = comps.split(lad.train.val_frac, seed=lad.seed)
    t0 = time.time()
    run.reset_metrics()
    train = train_all if data_size is None else train_all.nested_subsets([data_size], seed=lad.seed)[0]
    backbone = ctx.output(inst.inputs["backbone"])[1] if "backbone" in inst.inputs else None
    proxy = train_proxy(
        size,
        lad,
        train,
        val,
        init,
        ctx.world.vocab_size,
        ctx.world.seq_len,
        backbone_state=backbone,
        on_epoch=lambda e, row: run.log(row),
        compute_dtype=getattr(ctx.cfg, "compute_dtype", "float32"),  # keyed when not float32 (stages.plan)
    )
    save_proxy(run.path / "proxy", proxy)
    run.mark_done({"seconds": time.time() - t0})
    ctx.timings[f"proxy-{size.name}" + (f"-{data_size}" if data_size else "")] = time.time() - t0
    ctx.log(
        f"  {size.name}: {proxy.rm_params} params, {proxy.data_size} pairs, "
        f"val acc {np.mean(proxy.val_acc):.3f}, {time.time() - t0:.1f}s"
    )


def load(ctx, run, inst):
    """The `proxy_rm.ladder.TrainedProxy`."""
    return load_proxy(run.path / "proxy")


STAGE = Stage(
    "proxy",
    reads=("ladder.sizes[i]", "ladder.ensemble_size", "ladder.backbone", "ladder.train", "ladder.seed", "world"),
    consumes=("labels", "lm"),
    writes=("proxy/", "metrics.jsonl"),
    expand=expand,
    compute=compute,
    load=load,
    doc="a rung of the proxy ladder (per size, and per data size of the data-size sweep)",
)
