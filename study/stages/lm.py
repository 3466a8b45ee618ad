"""Stage "lm": a language model pretrained on the world's base corpus (the initial policy pi_init, or a
proxy's backbone). Its key is the world, the model's size and the pretraining settings, so a backbone of
the policy's own size is the policy's run."""

from __future__ import annotations

import time

import jax
import numpy as np

from core.checkpoint import load_state, save_state
from lm.model import ModelConfig, abstract
from lm.pretrain import pretrain
from study.stages.graph import Slot, Stage

POLICY = "lm"  # the label of pi_init's instance


def _reads(where: str) -> dict:
    return {
        "world": "world",
        "model.n_layer": f"{where}.n_layer",
        "model.d_model": f"{where}.d_model",
        "model.n_head": f"{where}.n_head",
        "corpus_size": "policy.corpus_size",
        "pretrain": "policy.pretrain",
    }


def backbone_label(i: int) -> str:
    return f"lm[{i}]"


def expand(cfg) -> list[Slot]:
    out = [Slot(POLICY, "lm", _reads("policy"))]
    if cfg.ladder.backbone:  # an LM of each proxy's size on the base corpus
        out += [Slot(backbone_label(i), "lm", _reads(f"ladder.sizes[{i}]")) for i in range(len(cfg.ladder.sizes))]
    return out


def model_config(ctx, inst) -> ModelConfig:
    r = {k: ctx.value(p) for k, p in inst.reads.items()}
    return ModelConfig(
        vocab_size=ctx.world.vocab_size,
        n_ctx=ctx.world.seq_len,
        n_layer=r["model.n_layer"],
        d_model=r["model.d_model"],
        n_head=r["model.n_head"],
        compute_dtype=getattr(ctx.cfg, "compute_dtype", "float32"),  # keyed when not float32 (stages.plan)
    )


def compute(ctx, run, inst) -> None:
    mcfg = model_config(ctx, inst)
    p = ctx.cfg.policy
    ctx.log(f"pretraining an LM of {mcfg.n_layer}x{mcfg.d_model} on the base corpus ({inst.label})")
    t0 = time.time()
    run.reset_metrics()
    tokens, mask = ctx.world.corpus(p.corpus_size, np.random.default_rng([ctx.cfg.world.seed, 11]))
    loss_mask = np.zeros(tokens.shape, bool)
    loss_mask[:, ctx.world.prompt_len :] = mask  # learn the responses, not the random prompts
    _, state, history = pretrain(
        mcfg, p.pretrain, tokens, loss_mask, jax.random.PRNGKey(p.pretrain.seed), progress=ctx.progress
    )
    for i, step in enumerate(history["step"]):
        run.log({"pretrain/" + k: v[i] for k, v in history.items() if k != "step"}, step=step)
    save_state(run.path / "state", state)
    run.mark_done({"seconds": time.time() - t0})
    ctx.timings[f"lm-{mcfg.n_layer}x{mcfg.d_model}"] = time.time() - t0


def load(ctx, run, inst) -> tuple:
    """(graphdef, state) of the pretrained LM."""
    graphdef, abstract_state = abstract(model_config(ctx, inst))
    return graphdef, load_state(run.path / "state", abstract_state)


STAGE = Stage(
    "lm",
    reads=(
        "world",
        "policy.n_layer",
        "policy.d_model",
        "policy.n_head",
        "policy.corpus_size",
        "policy.pretrain",
        "ladder.sizes[i].n_layer",
        "ladder.sizes[i].d_model",
        "ladder.sizes[i].n_head",
    ),
    consumes=(),
    writes=("state/", "metrics.jsonl"),
    expand=expand,
    compute=compute,
    load=load,
    doc="pi_init (and, with ladder.backbone, each proxy size's backbone) pretrained on the base corpus",
)
