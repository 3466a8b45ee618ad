"""A grid's compiled program, placed on the devices, and its checkpoints (what `rl.runner`'s loops and
`rl.final_samples` run): the optimizer of a config (`optimizer_for`, `OPTIMIZERS`), `build` (a `Program`: the
jitted one-point programs and their arguments), and each grid point run alone, with one device's program, on
the device it is dealt to (`core.mesh.deal`: round robin over the job's devices), so that a point's numbers
are the same whatever the device count and whatever other points share its grid (`init`, `chunk`,
`evaluate`). A runner is a dict, grid index -> that point's `RunnerState` on its device (this process's
points only under multi-host); `host` stacks results back into grid order; a checkpoint holds the points
stacked (`save`, `load`, `resume`), so a run resumes on any device count. The chunk programs donate their
runner: after `runner, m = chunk(prog, runner)` only the returned runner is alive.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from core import mesh as meshes
from core.checkpoint import load_state, save_state
from core.errors import UsageError
from core.store import atomic_write_json
from lm import model as gpt
from lm.sampling import as_bank
from lm.scorer import Scorer
from rl.grpo import GRPO
from rl.optimizer import Fns, Optimizer, RunnerState
from rl.ppo import PPO
from rl.ppo_constrained import PPO_CONSTRAINED

OPTIMIZERS: tuple[Optimizer, ...] = (PPO, GRPO, PPO_CONSTRAINED)
"""The optimizers the runner knows, found by their config class (`optimizer_for`)."""


def optimizer_for(cfg) -> Optimizer:
    """The optimizer whose config `cfg` is (a `PPOConfig` -> PPO, a `GRPOConfig` -> GRPO)."""
    for opt in OPTIMIZERS:  # the exact class first: a ConstrainedPPOConfig is a PPOConfig too
        if type(cfg) is opt.config:
            return opt
    for opt in OPTIMIZERS:
        if isinstance(cfg, opt.config):
            return opt
    raise UsageError(f"no optimizer takes a {type(cfg).__name__}: one of {', '.join(o.name for o in OPTIMIZERS)}")


@dataclass
class Program:
    """A grid ready to run: the jitted programs and their array arguments."""

    opt: Optimizer
    fns: Fns
    graphdef: Any  # of the trained policy (PPO's has a value head)
    cfg: Any  # the optimizer's config
    grid: list[tuple[float, int]]
    hyper: Any  # the config's traced NamedTuple, f32[G] each
    seeds: jax.Array  # int32[G]
    ref_state: Any
    bank: jax.Array
    prompt_len: int
    policy_states: Any  # stacked initial policy states [G, ...], numpy on the host
    policy_params: int
    scorer_params: tuple  # (reward params, gold params): the trailing arguments of chunk/evaluate
    mesh: Any  # core.mesh.job_mesh() (None: one device): the devices the points are dealt over
    devices: list  # the device of each grid point (core.mesh.deal)
    local: list[int]  # the grid points this process runs (core.mesh.mine)
    placed: dict  # g -> (policy state, hyper, seed) of point g on its device
    shared: dict  # device -> (ref_state, bank, reward params, gold params) on that device


def check_grid(grid) -> list[tuple[float, int]]:
    out = []
    for item in grid:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise UsageError(f"grid entries must be (kl_coef, seed) pairs, got {item!r}")
        k, s = item
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not float(k) >= 0:
            raise UsageError(f"grid entry {item!r}: need kl_coef >= 0 and an integer seed")
        out.append((float(k), int(s)))
    if len(set(out)) != len(out):
        raise UsageError("the grid has a repeated (kl_coef, seed) pair")
    if not out:
        raise UsageError("the grid is empty: give at least one (kl_coef, seed) pair")
    return out


def build(policy, reward: Scorer, gold: Scorer, prompt_bank, cfg, grid) -> Program:
    """The grid's `Program` (arguments as `rl.runner.run_rl`'s): the optimizer's jitted one-point programs,
    each point's starting state, hyperparameters and seed on the device it is dealt to, and the shared
    arguments (reference, bank, scorers' params) once on each device used. The stacked starting states are
    kept on the host (`policy_states`: shapes for a checkpoint's template; the devices hold each point's)."""
    opt = optimizer_for(cfg)
    graphdef, state = policy
    reward, gold = Scorer(*reward), Scorer(*gold)
    grid = check_grid(grid)
    bank = as_bank(prompt_bank, padded_ok=opt.name != "grpo")  # int32[M, P], or a PaddedBank (PPO's programs)
    pcfg = nnx.merge(graphdef, state).cfg
    if bank.shape[1] + cfg.max_new > pcfg.n_ctx:
        raise UsageError(
            f"prompt length {bank.shape[1]} + max_new {cfg.max_new} exceeds the policy's n_ctx={pcfg.n_ctx}"
        )
    pg, stacked = opt.init_policies(graphdef, state, [seed for _, seed in grid])
    hyper = [cfg.hyper(k) for k, _ in grid]
    hyper = type(hyper[0])(*(jnp.stack([h[i] for h in hyper]) for i in range(len(hyper[0]))))
    fns = opt.make(pg, graphdef, reward.fn, gold.fn, cfg.static(), int(bank.shape[1]))
    seeds = jnp.array([s for _, s in grid], jnp.int32)
    params = (reward.params, gold.params)
    mesh = meshes.job_mesh()
    devices = meshes.deal(len(grid), mesh)
    local = meshes.mine(devices)
    placed = {g: jax.device_put(pick((stacked, hyper, seeds), g), meshes.placed_on(devices, g)) for g in local}
    at = {meshes.placed_on(devices, g) for g in local}
    shared = {d: jax.device_put((state, bank, *params), d) for d in at}
    stacked = jax.device_get(stacked)  # the devices hold each point's copy (`placed`)
    n_params = gpt.param_count(pcfg, lm_head=True)
    return Program(
        opt, fns, pg, cfg, grid, hyper, seeds, state, bank, bank.shape[1], stacked, n_params, params, mesh, devices,
        local, placed, shared,
    )  # fmt: skip


def pick(tree, g: int):
    """Grid point g's slice of a tree stacked over the grid."""
    return jax.tree.map(lambda x: x[g], tree)


def _shared(prog: Program, g: int) -> tuple:
    """(ref_state, bank, reward params, gold params) on point g's device."""
    return prog.shared[meshes.placed_on(prog.devices, g)]


def init(prog: Program) -> dict:
    """Every point's initial runner state, on its device."""
    return {g: prog.fns.init(*prog.placed[g]) for g in prog.local}


def chunk(prog: Program, runner: dict) -> tuple[dict, dict]:
    """One chunk of every grid point (each dispatched to its device; they run at once). `runner` is donated:
    use only the returned one. Returns (runner, metrics: g -> that point's metrics)."""
    out = {g: prog.fns.chunk(runner[g], prog.placed[g][1], *_shared(prog, g)) for g in prog.local}
    return {g: o[0] for g, o in out.items()}, {g: o[1] for g, o in out.items()}


def evaluate(prog: Program, runner: dict, step: int) -> dict:
    """g -> (metrics, tokens, mask) of point g's evaluation at `step`."""
    return {
        g: prog.fns.evaluate(runner[g].params, prog.placed[g][1], prog.placed[g][2], jnp.int32(step), *_shared(prog, g))
        for g in prog.local
    }


def host(prog: Program, items: dict):
    """numpy copies of the points' results (g -> pytree), stacked over the grid in grid order (every
    process's points under multi-host)."""
    return meshes.gather(items, prog.devices)


def point_params(prog: Program, runner: dict) -> dict:
    """g -> point g's policy parameters, for every grid point: this process's on their devices, another
    process's (multi-host) as host copies."""
    params = {g: r.params for g, r in runner.items()}
    if jax.process_count() == 1:
        return params
    every = host(prog, params)
    return {g: pick(every, g) for g in range(len(prog.grid))}


def save(prog: Program, run_path: Path, runner: dict, step: int) -> None:
    """Checkpoint the runner (g -> a point's state) stacked over the grid (atomically), then note its step."""
    save_state(run_path / "checkpoint", host(prog, runner))  # stacked over the grid, whatever the devices
    atomic_write_json(run_path / "checkpoint.json", {"step": step})


def load(run_path: Path, template: RunnerState) -> tuple[RunnerState, int] | None:
    """The last checkpoint, shaped like `template` (from jax.eval_shape), and its step; None when there is none."""
    if not (run_path / "checkpoint").is_dir():
        return None
    runner = load_state(run_path / "checkpoint", template)
    return runner, int(np.asarray(runner.step).reshape(-1)[0])  # the state's own count is the truth


def resume(prog: Program, run_path: Path) -> tuple[dict, int] | None:
    """`load` for the program's grid (a checkpoint stacks the grid's points), each point placed on its device."""
    template = jax.eval_shape(prog.fns.init_grid, prog.policy_states, prog.hyper, prog.seeds)
    loaded = load(run_path, template)
    if loaded is None:
        return None
    stacked, step = loaded
    return {g: jax.device_put(pick(stacked, g), meshes.placed_on(prog.devices, g)) for g in prog.local}, step
