"""Stage "score-<size>": every member of one proxy scores every response of the pool, once; best-of-n and
the selection rules both rank the pool by these scores."""

from __future__ import annotations

import io
import time

import numpy as np

from core.store import atomic_write_bytes
from study.stages import proxy as proxy_stage
from study.stages.graph import Slot, Stage

SCORES = "scores.npy"


def expand(cfg) -> list[Slot]:
    return proxy_stage.per_proxy(cfg, "score", {}, lambda p: {"pool": "pool", "proxy": p})


def compute(ctx, run, inst) -> None:
    t0 = time.time()
    pool = ctx.output(inst.inputs["pool"])
    proxy = ctx.output(inst.inputs["proxy"])
    scores = proxy.scores(pool.tokens.astype(np.int32), pool.mask, pool.prompt_len)
    buf = io.BytesIO()
    np.save(buf, np.asarray(scores))
    atomic_write_bytes(run.file(SCORES), buf.getvalue())
    run.mark_done({"seconds": time.time() - t0})
    ctx.timings[f"score-{proxy.size.name}" + (f"-{proxy.data_size}" if "@" in inst.inputs["proxy"].label else "")] = (
        time.time() - t0
    )


def load(ctx, run, inst) -> np.ndarray:
    """float[k, P*N]: each member's recentred score of each pool response (`TrainedProxy.scores`)."""
    return np.load(run.path / SCORES)


STAGE = Stage(
    "score",
    reads=(),
    consumes=("pool", "proxy"),
    writes=(SCORES,),
    expand=expand,
    compute=compute,
    load=load,
    doc="each proxy member's score of every pool response",
)
