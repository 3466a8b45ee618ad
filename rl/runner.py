"""The Python loop around any optimizer's compiled program (the interface of rl.optimizer: PPO, rl.ppo;
GRPO, rl.grpo; the program, its placement on the devices and its checkpoints: rl.program): a grid of
(kl_coef, seed) points trained in memory (`train_grid`) or into a run store with checkpoints and resume
(`run_rl`, also named `run_ppo`; a checkpoint's samples: rl.final_samples), evaluation rows at the steps of
`rl.ppo_config.eval_steps`, the stopping rule (`stop_rule`: the update budget, optionally a KL stop), the
non-finite stop, and the RL points table (`points_from_rows`, with the optimizer's name as `algo`). The
optimizer is the one whose config class the config is (`optimizer_for`). Each grid point runs alone on the
device it is dealt to (rl.program), so its numbers depend neither on the device count nor on its grid.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from core import mesh as meshes
from core.errors import UsageError
from core.store import Run, atomic_write_json, atomic_write_text, canonical_json, to_jsonable
from lm.scorer import Scorer
from rl.diversity import diversity
from rl.optimizer import Optimizer
from rl.points import points_from_rows
from rl.ppo_config import eval_steps, stop_rule
from rl.program import (
    OPTIMIZERS,
    Program,
    build,
    chunk,
    evaluate,
    host,
    init,
    optimizer_for,
    point_params,
    resume,
    save,
)

__all__ = [
    "OPTIMIZERS",
    "NonFiniteLoss",
    "optimizer_for",
    "points_from_rows",
    "run_ppo",
    "run_rl",
    "train_grid",
]


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or inf: the run stops, its last good checkpoint is kept."""


def _check_finite(prog: Program, metrics: dict, step0: int, where: str) -> None:
    ok = np.asarray(metrics["loss/finite"])  # [G, eval_every]
    if ok.all():
        return
    g, i = map(int, np.argwhere(~ok)[0])
    k, s = prog.grid[g]
    raise NonFiniteLoss(
        f"{prog.opt.name.upper()}: non-finite loss at update {step0 + i + 1} (grid point kl_coef={k}, seed={s});"
        f" run stopped; {where}"
    )


def _train_rows(prog: Program, metrics: dict, step0: int) -> list[dict]:
    rows = []
    for g, (k, s) in enumerate(prog.grid):
        for i in range(prog.cfg.eval_every):
            row = {name: float(v[g, i]) for name, v in metrics.items() if name != "loss/finite"}
            rows.append({"split": "train", "step": step0 + i + 1, "kl_coef": k, "seed": s, **row})
    return rows


def _eval_rows(prog: Program, runner: dict, step: int, host_gold=None) -> list[dict]:
    ev, sm = evaluate(prog, runner, step), prog.fns.state_metrics
    items = {g: (*ev[g], runner[g].kl_coef, {} if sm is None else sm(runner[g], prog.placed[g][1])) for g in ev}
    out, tokens, mask, kl_coef, state = host(prog, items)
    rows = []
    for g, (k, s) in enumerate(prog.grid):
        div = diversity(tokens[g], mask[g], prog.prompt_len, prog.cfg.bleu_sample, np.random.default_rng([s, step]))
        row = {name: float(v[g]) for name, v in out.items()}
        if host_gold is not None:  # the gold outside the program, on these evaluation samples only
            gold = np.asarray(host_gold(tokens[g], mask[g]), np.float64)
            row["gold/score"], row["eval/gold_se"] = float(gold.mean()), float(gold.std(ddof=1) / np.sqrt(gold.size))
        row["objective/kl_coef"] = float(kl_coef[g])
        row.update({name: float(v[g]) for name, v in state.items()})
        row.update({f"eval/{name}": v for name, v in div.items()})
        rows.append({"split": "eval", "step": step, "kl_coef": k, "seed": s, **row})
    return rows


def _kl_stop(cfg, rows: Sequence[dict]) -> bool:
    """The optional early stop: True when cfg.stop_kl is set and every grid point's evaluation KL in
    `rows` (the evaluation rows of one step) is >= stop_kl."""
    return cfg.stop_kl is not None and bool(rows) and all(r["objective/kl"] >= cfg.stop_kl for r in rows)


def train_grid(policy, reward: Scorer, gold: Scorer, prompt_bank, cfg, grid, host_gold=None) -> list[dict]:
    """Train a grid of (kl_coef, seed) points in one compiled program, in memory (no store, no checkpoints).

    Arguments: policy (graphdef, state) of the pretrained initial policy (LM head); reward and gold
    `Scorer`s (as in `run_rl`); prompt_bank int32[M, P] (PPO: or a left-padded `lm.sampling.PaddedBank`); cfg
    (its class picks the optimizer); grid of (kl_coef, seed) pairs. Evaluates at step 0 and the steps of
    `eval_steps(cfg)`; stops early under cfg.stop_kl as `run_rl` does. host_gold: None, or a gold that cannot
    be compiled (a callable (tokens, mask) -> f32[B], e.g. a torch model's `score`; `gold` is then
    `lm.scorer.HostGold`'s stand-in): it scores each evaluation's samples outside the program, batched, and
    gives the rows' gold/score and eval/gold_se.
    Returns: one dict a grid point: kl_coef, seed, graphdef, state (final policy), train (metric ->
    float[updates done]), eval (evaluation rows, step 0 included), updates_per_s (whole grid, compile
    and evaluations excluded).
    """
    prog = build(policy, reward, gold, prompt_bank, cfg, grid)
    runner = init(prog)
    evals = _eval_rows(prog, runner, 0, host_gold)
    scheduled = set(eval_steps(cfg))
    train: list[dict] = []
    seconds, step = 0.0, 0
    for c in range(cfg.updates // cfg.eval_every):
        t0 = time.perf_counter()
        runner, m = chunk(prog, runner)
        m = host(prog, m)
        if c > 0:  # the first chunk includes compilation
            seconds += time.perf_counter() - t0
        _check_finite(prog, m, step, "nothing saved (train_grid keeps no checkpoints)")
        step += cfg.eval_every
        train.append(m)
        if step in scheduled:
            evals += (new := _eval_rows(prog, runner, step, host_gold))
            if _kl_stop(cfg, new):
                break
    timed = step - cfg.eval_every
    results = []
    final = point_params(prog, runner)
    for g, (k, s) in enumerate(prog.grid):
        results.append(
            {
                "kl_coef": k,
                "seed": s,
                "graphdef": prog.graphdef,
                "state": final[g],
                "train": {n: np.concatenate([np.asarray(m[n][g]) for m in train]) for n in train[0]},
                "eval": [r for r in evals if r["kl_coef"] == k and r["seed"] == s],
                "updates_per_s": timed / seconds if seconds > 0 else float("nan"),
            }
        )
    return results


# ---------------------------------------------------------------- the run store


def _with_new_defaults(stored: dict, opt: Optimizer) -> dict:
    """A stored run config with config fields added since it was written (absent there) at their defaults:
    a run written before a new field was added resumes when the new field keeps its default."""
    key = opt.config_key
    if isinstance(stored.get(key), dict):
        stored = {**stored, key: {**to_jsonable(opt.config()), **stored[key]}}
    return stored


def run_rl(
    run,
    policy,
    reward: Scorer,
    gold: Scorer,
    prompt_bank,
    cfg,
    grid: Sequence[tuple[float, int]],
    *,
    rm_params: int | None = None,
    extra: dict | None = None,
    max_chunks: int | None = None,
    progress: bool = False,
):
    """Train a grid of (kl_coef, seed) points against `reward` in one compiled program, into a run, with the
    optimizer whose config `cfg` is (`optimizer_for`: PPO for a PPOConfig, GRPO for a GRPOConfig).

    After every chunk of `eval_every` updates its per-update training rows go to metrics.jsonl; after the
    chunks ending at `eval_steps(cfg)` (every chunk by default) evaluation rows follow, then the full
    runner state is checkpointed. A relaunch resumes from the last checkpoint (the last evaluation)
    bit-identically, dropping rows logged after it; a finished run (DONE) returns its points at once.
    The run ends at `updates`, or earlier under cfg.stop_kl; the rule (`stop_rule(cfg)`) is a column of
    every points row and, with the evaluated steps, in DONE.

    Arguments:
      run: a `core.store.Run` or a directory (its config.json is written when missing).
      policy: (graphdef, state) of the pretrained initial policy (LM head); also the frozen reference.
      reward: a `Scorer` (fn, params) with fn(params, tokens int32[B, P+T], mask bool[B, T]) -> f32[B],
        pure and jittable, recentred; equal fns share one compiled program, params are its arguments.
      gold: a `Scorer` whose fn returns a dict of f32[B] gold components, "score" among them.
      prompt_bank: int32[M, P] prompts, sampled with replacement inside the program.
      cfg: PPOConfig or GRPOConfig. grid: (kl_coef, seed) pairs; kl_coef overrides cfg.kl_coef, seed sets
        PPO's value head initialisation and every PRNG stream of the point.
      rm_params, extra: copied into every points row (extra: a dict of further columns).
      max_chunks: stop after this many compiled chunks in this call (the run stays resumable; chunks after
        its last evaluation are redone on relaunch); None: to the end.
      progress: show a tqdm bar.
    Returns: the points DataFrame (also written to points.parquet, then DONE), or None when stopped by
    max_chunks. Raises NonFiniteLoss when a loss is NaN/inf (the last good checkpoint is kept).
    """
    opt = optimizer_for(cfg)
    if not isinstance(run, Run):
        run = Run(Path(run))
        run.path.mkdir(parents=True, exist_ok=True)
        config = {opt.config_key: cfg, "grid": [list(g) for g in grid], "extra": extra}
        if not (run.path / "config.json").exists():
            atomic_write_json(run.path / "config.json", config)
        elif canonical_json(_with_new_defaults(run.config(), opt)) != canonical_json(to_jsonable(config)):
            name = opt.name.upper()
            raise UsageError(f"{run.path} holds a run with a different {name} config or grid; use a new directory")
    if run.done:
        return run.points()
    prog = build(policy, reward, gold, prompt_bank, cfg, grid)
    loaded = resume(prog, run.path)
    if loaded is None:
        runner, step = init(prog), 0
        run.reset_metrics()
        for row in _eval_rows(prog, runner, 0):
            run.log(row)
    else:
        runner, step = loaded
        # Rows logged after the checkpoint (a crash between logging and saving, or chunks trained after the
        # last evaluation) are redone: drop them. Reading is strict (core.store.read_metrics): a line that
        # is not JSON raises UsageError (file and line) before anything is rewritten; only a torn last line
        # is left out (with a warning): it is the write a kill interrupted, after the last checkpoint.
        try:
            rows = run.metrics()
        except UsageError as e:
            raise UsageError(f"{e}; cannot resume {run.path.name} from its checkpoint without it") from None
        kept = [r for r in rows if r.get("step", 0) <= step]
        atomic_write_text(
            run.file("metrics.jsonl"), "".join(json.dumps(to_jsonable(r), sort_keys=True) + "\n" for r in kept)
        )
    saved = step  # the update count of the last checkpoint (0: none yet)
    scheduled = set(eval_steps(cfg))
    stopped = loaded is not None and _kl_stop(cfg, [r for r in kept if r.get("split") == "eval" and r["step"] == step])
    n_chunks = cfg.updates // cfg.eval_every
    todo = range(step // cfg.eval_every, n_chunks if not stopped else 0)
    if max_chunks is not None:
        todo = todo[:max_chunks]
    bar = None
    if progress:
        bar = tqdm(total=cfg.updates, initial=step, desc=opt.name, unit="update")
    seconds = 0.0  # training time since the last evaluation
    for _ in todo:
        t0 = time.perf_counter()
        runner, metrics = chunk(prog, runner)  # the old runner is donated; the checkpoint holds it
        metrics = host(prog, metrics)
        where = (
            f"last good checkpoint (update {saved}) kept in {run.path / 'checkpoint'}"
            if saved
            else "no checkpoint was written"
        )
        _check_finite(prog, metrics, step, where)
        seconds += time.perf_counter() - t0
        for row in _train_rows(prog, metrics, step):
            run.log(row)
        step += cfg.eval_every
        if bar is not None:
            bar.update(cfg.eval_every)
        if step not in scheduled:
            continue
        rows = _eval_rows(prog, runner, step)
        rate = (step - saved) / seconds  # updates per second of training; the first chunk includes compiling
        for row in rows:
            run.log({**row, "perf/updates_per_s": rate})
        save(prog, run.path, runner, step)
        saved, seconds = step, 0.0
        if _kl_stop(cfg, rows):
            stopped = True
            break
    if bar is not None:
        bar.close()
    if step < cfg.updates and not stopped:
        return None
    rule = stop_rule(cfg)
    points = points_from_rows(run.metrics(), rm_params, prog.policy_params, extra, stop_rule=rule, algo=opt.name)
    run.write_points(points)
    done = [0] + [s for s in eval_steps(cfg) if s <= step]
    info = {"updates": step, "grid": [list(g) for g in prog.grid], "stop_rule": rule, "eval_steps": done}
    info["mesh"] = meshes.describe(prog.mesh)  # how it ran, never what it computed
    run.mark_done({**info, "stopped_by": "stop_kl" if stopped else "updates"})
    return points


run_ppo = run_rl
"""The name before the optimizer interface: `run_rl` with a PPOConfig (any optimizer's config works)."""
