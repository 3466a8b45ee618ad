"""The evaluation samples of each grid point's policy at a run's last checkpoint, with the per-token log-probs of
that policy and of the reference on them: what the KL split (study.stages.klsplit) needs. The program and the
checkpoint are the runner's (`rl.program`), so the draw is the same as the run's last evaluation row."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np

from core.errors import UsageError
from lm import model as gpt
from lm.scorer import Scorer
from rl.program import build, evaluate, host, point_params, resume


def final_samples(run_path, policy, reward: Scorer, gold: Scorer, prompt_bank, cfg, grid, groups=None) -> list[dict]:
    """The evaluation samples of each grid point's policy at a run's last checkpoint, with per-token log-probs
    of that policy and of the reference (the initial policy) on them: what the KL split needs (`probes`).

    Arguments as `run_rl`'s (the run's own); the evaluation draws the same samples as the last evaluation row.
    Returns one dict per grid point, in grid order: kl_coef, seed, step, tokens int32[B, P+T], mask bool[B, T],
    logp and logp_ref f32[B, T] (0 off the mask), eval (the evaluation's scalars). Raises UsageError when the
    run has no checkpoint. groups (int32[V] token -> group, e.g. `World.canon`): rows also carry logp_group and
    logp_ref_group, the log-probs of each token's group (`gpt.response_group_logprobs`)."""
    prog = build(policy, reward, gold, prompt_bank, cfg, grid)
    loaded = resume(prog, Path(run_path))
    if loaded is None:
        raise UsageError(f"{run_path} has no RL checkpoint to take samples from")
    runner, step = loaded
    out, tokens, mask = host(prog, evaluate(prog, runner, step))
    params_of = point_params(prog, runner)
    rows = []
    for g, (k, s) in enumerate(prog.grid):
        params = params_of[g]
        tok, m = tokens[g], np.asarray(mask[g], bool)
        lp = gpt.response_logprobs(prog.graphdef, params, tok, prog.prompt_len, cfg.temperature)
        lq = gpt.response_logprobs(policy[0], policy[1], tok, prog.prompt_len, cfg.temperature)
        rows.append(
            {
                "kl_coef": k,
                "seed": s,
                "step": step,
                "tokens": np.asarray(tok),
                "mask": m,
                "logp": np.where(m, np.asarray(lp), 0.0).astype(np.float32),
                "logp_ref": np.where(m, np.asarray(lq), 0.0).astype(np.float32),
                "eval": {name: float(v[g]) for name, v in out.items()},
            }
        )
        if groups is not None:
            for key, (gd, st) in (("logp_group", (prog.graphdef, params)), ("logp_ref_group", policy)):
                lg = gpt.response_group_logprobs(gd, st, tok, jnp.asarray(groups), prog.prompt_len, cfg.temperature)
                rows[-1][key] = np.where(m, np.asarray(lg), 0.0).astype(np.float32)
    return rows
