"""`overopt study`: the whole pipeline, stage by stage, every stage a content-addressed run.

  world -> pretrain pi_init -> sample pairs, gold labels -> proxy ladder (+ ensembles, data sizes)
        -> BoN pool -> BoN points per proxy -> PPO grid per proxy -> DIR/points.parquet
        -> DIR/fits.json -> DIR/figures/, DIR/report.md

Each stage is a run directory under DIR/runs whose id hashes the stage's own config together with
the ids of the stages it reads, so a relaunch skips what is DONE and a changed knob redoes only
what depends on it. The same config and seed give the same numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from bon.pools import BonConfig
from core.config import merge, parse_overrides, to_dict
from core.errors import UsageError
from core.store import Run, atomic_write_json, atomic_write_parquet, run_id
from gold_rm.gold import GoldConfig
from gold_rm.world import WorldConfig
from lm.pretrain import PretrainConfig
from proxy_rm.ladder import LadderConfig
from rl.ppo import PPOConfig
from study import presets as _presets


@dataclass(frozen=True)
class PolicyConfig:
    """The initial policy: its size, its corpus and its pretraining."""

    n_layer: int = 2
    d_model: int = 64
    n_head: int = 4
    corpus_size: int = 20000
    """base-corpus sequences the policy (and proxy backbones) are pretrained on."""
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


@dataclass(frozen=True)
class LabelConfig:
    """Comparisons sampled from the initial policy and labelled by the gold RM."""

    n_comparisons: int = 20000
    """labelled pairs in all (train + validation); pairs share a prompt."""
    mode: Literal["hard", "bt"] = "hard"
    """hard: the higher gold wins (Gao); bt: sampled Bradley-Terry."""
    temperature: float = 1.0
    """Bradley-Terry temperature (mode bt)."""
    flip_frac: float = 0.0
    """fraction of labels flipped at random (Coste et al. use 0.25)."""
    n_init_samples: int = 4096
    """extra samples from the initial policy used to recentre every proxy."""
    seed: int = 2


@dataclass(frozen=True)
class RLConfig:
    """PPO against each proxy: a grid of KL coefficients x seeds in one compiled program."""

    ppo: PPOConfig = field(default_factory=PPOConfig)
    kl_coefs: tuple[float, ...] = (0.0,)
    seeds: tuple[int, ...] = (0,)
    proxies: tuple[str, ...] = ()
    """names of the proxy sizes that get PPO (empty: every size)."""
    prompt_bank: int = 4096
    """prompts PPO samples from (with replacement, inside the compiled program)."""
    prompt_seed: int = 4
    enabled: bool = True


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study depends on. A preset is one named, frozen instance."""

    preset: str = "custom"
    world: WorldConfig = field(default_factory=WorldConfig)
    gold: GoldConfig = field(default_factory=GoldConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    ladder: LadderConfig = field(default_factory=LadderConfig)
    bon: BonConfig = field(default_factory=BonConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    figures: bool = True
    """draw the figures and write the report at the end."""


def resolve(preset: str, overrides: list[str] | None = None) -> StudyConfig:
    """A preset with `a.b=value` overrides applied and checked (UsageError on unknown key / wrong type)."""
    if preset not in _presets.PRESETS:
        raise UsageError(f"unknown preset '{preset}' (choose from: {', '.join(_presets.PRESETS)})")
    cfg = _presets.PRESETS[preset]()
    if overrides:
        cfg = merge(cfg, parse_overrides(overrides))
    validate(cfg)
    return cfg


def validate(cfg: StudyConfig) -> None:
    from proxy_rm.ladder import validate_ladder

    validate_ladder(cfg.ladder)
    if cfg.policy.d_model % cfg.policy.n_head:
        raise UsageError(f"policy.d_model {cfg.policy.d_model} is not divisible by policy.n_head {cfg.policy.n_head}")
    if cfg.labels.n_comparisons < 20:
        raise UsageError("labels.n_comparisons must be at least 20")
    if not 0.0 <= cfg.labels.flip_frac <= 0.5:
        raise UsageError(f"labels.flip_frac must lie in [0, 0.5], got {cfg.labels.flip_frac}")
    if cfg.bon.pool_size < 2 or cfg.bon.n_prompts < 2:
        raise UsageError("bon.pool_size and bon.n_prompts must be at least 2")
    if cfg.rl.ppo.max_new != cfg.world.max_new:
        raise UsageError(f"rl.ppo.max_new ({cfg.rl.ppo.max_new}) must equal world.max_new ({cfg.world.max_new})")
    names = {s.name for s in cfg.ladder.sizes}
    unknown = set(cfg.rl.proxies) - names
    if unknown:
        raise UsageError(f"rl.proxies names unknown proxy sizes: {sorted(unknown)}")
    n_train = n_train_comparisons(cfg)
    too_big = [d for d in cfg.ladder.data_sizes if d > n_train]
    if too_big:
        raise UsageError(f"ladder.data_sizes {too_big} exceed the {n_train} training comparisons")


def n_train_comparisons(cfg) -> int:
    """How many comparisons the full-data proxies train on (the rest is the validation split)."""
    n = cfg.labels.n_comparisons
    return n - max(1, int(round(cfg.ladder.train.val_frac * n)))


def fittable(points):
    """(the points of groups that have enough points for a fit, descriptions of the groups left out)."""
    from scaling.fitting import MIN_POINTS, _resolve_by

    by = _resolve_by(points, None)
    enough = points.groupby(by, dropna=False)["kl"].transform(lambda k: int((k > 0).sum()) >= MIN_POINTS)
    left = points[~enough.astype(bool)].drop_duplicates(by)[by].to_dict(orient="records")
    return points[enough.astype(bool)], left


def recentred(pool):
    """The pool with every gold term shifted so that the initial policy's mean (over the pool) is 0."""
    import dataclasses

    return dataclasses.replace(pool, gold={k: v - np.mean(v, dtype=np.float64) for k, v in pool.gold.items()})


# ---------------------------------------------------------------------------------------------
# the output directory


MARKER = "study.json"


def prepare_out(out: Path, cfg: StudyConfig, resume: bool) -> None:
    """Check DIR before anything is written: new, empty, or a study of the same config."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    marker = out / MARKER
    if out.exists() and any(out.iterdir()):
        if not marker.exists():
            raise UsageError(f"--out {out} is a non-empty directory that holds no overopt study; choose another")
        try:
            prev = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError):
            raise UsageError(f"{marker} is unreadable; choose another --out") from None
        if prev.get("config_id") != run_id(cfg):
            raise UsageError(
                f"--out {out} holds a study with another config (preset {prev.get('preset')!r}); choose another --out"
            )
    elif resume:
        raise UsageError(f"--resume: {out} holds no study to resume")
    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {out} is not writable")


# ---------------------------------------------------------------------------------------------
# stages




def _log(msg: str) -> None:
    print(f"[overopt] {msg}", file=sys.stderr, flush=True)


class Study:
    """Runs (or finds) every stage of one study config under one output directory."""

    def __init__(self, cfg: StudyConfig, out: Path, progress: bool = True, runs_root: Path | None = None):
        from gold_rm.gold import GoldRM
        from gold_rm.world import World

        self.cfg = cfg
        self.out = Path(out)
        self.runs_root = Path(runs_root) if runs_root is not None else self.out / "runs"
        self.progress = progress
        self.world = World(cfg.world)
        self.gold = GoldRM(self.world, cfg.gold)
        self.timings: dict[str, float] = {}
        self._policy = None
        self._pool = None

    @contextlib.contextmanager
    def _stage(self, kind: str, key: dict):
        """The run of one stage, locked while this process may compute it (parallel sweep jobs share
        stages: the first computes, the others wait, then find it DONE)."""
        run = Run.open(self.runs_root, {"stage": kind, **key}, prefix=kind)
        if run.done:
            yield run
            return
        with run.lock():
            yield run

    # -- pi_init ----------------------------------------------------------------------------
    def policy_model_cfg(self):
        from lm.model import ModelConfig

        p = self.cfg.policy
        return ModelConfig(
            vocab_size=self.world.vocab_size, n_ctx=self.world.seq_len, n_layer=p.n_layer, d_model=p.d_model,
            n_head=p.n_head,
        )

    def _lm_key(self, mcfg) -> dict:
        """What an "lm" stage (an LM pretrained on the base corpus) depends on."""
        p = self.cfg.policy
        return {"world": to_dict(self.cfg.world), "model": to_dict(mcfg), "corpus_size": p.corpus_size,
                "pretrain": to_dict(p.pretrain)}

    def _pretrain_stage(self, mcfg) -> tuple:
        """Pretrain an LM of config `mcfg` on the base corpus (the policy, or a proxy backbone).
        Stage "lm": its id hashes the world, the model size and the pretraining settings."""
        import jax

        from core.checkpoint import load_state, save_state
        from lm.model import abstract
        from lm.pretrain import pretrain

        p = self.cfg.policy
        with self._stage("lm", self._lm_key(mcfg)) as run:
            if not run.done:
                t0 = time.time()
                run.reset_metrics()
                tokens, mask = self.world.corpus(p.corpus_size, np.random.default_rng([self.cfg.world.seed, 11]))
                loss_mask = np.zeros(tokens.shape, bool)
                loss_mask[:, self.world.prompt_len :] = mask  # learn the responses, not the random prompts
                _, state, history = pretrain(
                    mcfg, p.pretrain, tokens, loss_mask, jax.random.PRNGKey(p.pretrain.seed), progress=self.progress
                )
                for i, step in enumerate(history["step"]):
                    run.log({"pretrain/" + k: v[i] for k, v in history.items() if k != "step"}, step=step)
                save_state(run.path / "state", state)
                run.mark_done({"seconds": time.time() - t0})
                self.timings[f"lm-{mcfg.n_layer}x{mcfg.d_model}"] = time.time() - t0
        graphdef, abstract_state = abstract(mcfg)
        return graphdef, load_state(run.path / "state", abstract_state)

    def policy(self):
        if self._policy is None:
            _log("stage 1/6: pretraining the initial policy")
            self._policy = self._pretrain_stage(self.policy_model_cfg())
        return self._policy

    def policy_id(self) -> str:
        """The id of pi_init's "lm" stage (as `_stage` computes it), without loading the policy."""
        return run_id({"stage": "lm", **self._lm_key(self.policy_model_cfg())}, "lm")

    # -- comparisons --------------------------------------------------------------------------
    def comparisons(self):
        """(Comparisons of all labelled pairs, (init tokens, init mask)) for recentring."""
        import jax

        from gold_rm.labels import label_pairs
        from lm.sampling import sample_many
        from proxy_rm.train import Comparisons

        c = self.cfg.labels
        key = {"policy": self.policy_id(), "gold": to_dict(self.cfg.gold), "labels": to_dict(c)}
        with self._stage("labels", key) as run:
            path = run.path / "comparisons.npz"
            if not run.done:
                _log("stage 2/6: sampling pairs from the initial policy and labelling them with the gold RM")
                t0 = time.time()
                graphdef, state = self.policy()
                rng = np.random.default_rng([c.seed, 3])
                prompts = self.world.sample_prompts(rng, c.n_comparisons)
                s = sample_many(graphdef, state, prompts, jax.random.PRNGKey(c.seed), 2, max_new=self.world.max_new,
                                batch_size=4096, progress=self.progress)
                ta, tb = s.tokens[0::2], s.tokens[1::2]
                ma, mb = s.mask[0::2], s.mask[1::2]
                ga = np.asarray(self.gold.score(ta, ma), np.float64)
                gb = np.asarray(self.gold.score(tb, mb), np.float64)
                label = label_pairs(ga, gb, mode=c.mode, temperature=c.temperature, flip_frac=c.flip_frac, rng=rng)
                init_prompts = self.world.sample_prompts(rng, c.n_init_samples)
                init = sample_many(graphdef, state, init_prompts, jax.random.PRNGKey(c.seed + 1), 1,
                                   max_new=self.world.max_new, batch_size=4096)
                import io

                from core.store import atomic_write_bytes

                buf = io.BytesIO()
                np.savez_compressed(buf, ta=ta, ma=ma, tb=tb, mb=mb, ga=ga, gb=gb, label=label,
                                    init_tokens=init.tokens, init_mask=init.mask)
                atomic_write_bytes(path, buf.getvalue())
                agree = float(np.mean((ga > gb) == (label == 1)))
                run.log({"labels/n": c.n_comparisons, "labels/agree_with_gold": agree,
                         "labels/frac_a": float(label.mean())})
                run.mark_done({"seconds": time.time() - t0})
                self.timings["labels"] = time.time() - t0
        with np.load(path) as z:
            comps = Comparisons(z["ta"], z["ma"], z["tb"], z["mb"], z["label"], self.world.prompt_len)
            init = (z["init_tokens"], z["init_mask"])
        return run.id, comps, init

    # -- proxies ------------------------------------------------------------------------------
    def proxy_jobs(self) -> list[tuple]:
        """(size, data_size or None) for every proxy the study trains.

        A data size equal to the whole training split is the full-data proxy itself: not trained twice.
        """
        lad = self.cfg.ladder
        n_full = n_train_comparisons(self.cfg)
        jobs = [(s, None) for s in lad.sizes]
        for s in lad.sizes:
            if lad.data_sweep_sizes and s.name not in lad.data_sweep_sizes:
                continue
            jobs += [(s, d) for d in lad.data_sizes if d != n_full]
        return jobs

    def proxies(self) -> list:
        """Train (or load) every proxy; returns a list of (run id, TrainedProxy, trained on all data?)."""
        from proxy_rm.ladder import load_proxy, model_config, save_proxy, train_proxy

        labels_id, comps, init = self.comparisons()
        lad = self.cfg.ladder
        train_all, val = comps.split(lad.train.val_frac, seed=lad.seed)
        out = []
        jobs = self.proxy_jobs()
        _log(f"stage 3/6: training {len(jobs)} proxy reward models ({lad.ensemble_size} seed(s) each)")
        for size, data_size in jobs:
            ladder_key = {k: v for k, v in to_dict(lad).items() if k not in ("sizes", "data_sizes", "data_sweep_sizes")}
            key = {"labels": labels_id, "size": to_dict(size), "data_size": data_size, "ladder": ladder_key}
            with self._stage(f"proxy-{size.name}", key) as run:
                if not run.done:
                    t0 = time.time()
                    run.reset_metrics()
                    train = train_all if data_size is None else train_all.nested_subsets([data_size], seed=lad.seed)[0]
                    backbone = None
                    if lad.backbone:
                        # an LM of this size on the base corpus; the "lm" stage is shared with pi_init
                        # when the sizes coincide
                        backbone = self._pretrain_stage(
                            model_config(size, self.world.vocab_size, self.world.seq_len)
                        )[1]
                    proxy = train_proxy(size, lad, train, val, init, self.world.vocab_size, self.world.seq_len,
                                        backbone_state=backbone, on_epoch=lambda e, row, r=run: r.log(row))
                    save_proxy(run.path / "proxy", proxy)
                    run.mark_done({"seconds": time.time() - t0})
                    self.timings[f"proxy-{size.name}" + (f"-{data_size}" if data_size else "")] = time.time() - t0
                    _log(f"  {size.name}: {proxy.rm_params} params, {proxy.data_size} pairs, "
                         f"val acc {np.mean(proxy.val_acc):.3f}, {time.time() - t0:.1f}s")
            out.append((run.id, load_proxy(run.path / "proxy"), data_size is None))
        return out

    # -- best-of-n ----------------------------------------------------------------------------
    def pool(self):
        from bon.pools import load_pool, make_pool, save_pool

        key = {"policy": self.policy_id(), "gold": to_dict(self.cfg.gold), "bon": to_dict(self.cfg.bon)}
        with self._stage("pool", key) as run:
            path = run.path / "pool.npz"
            if not run.done:
                b = self.cfg.bon
                _log(f"stage 4/6: best-of-n pool, {b.pool_size} responses x {b.n_prompts} prompts")
                t0 = time.time()
                graphdef, state = self.policy()
                pool = make_pool(self.world, self.gold, graphdef, state, b, progress=self.progress)
                save_pool(path, pool)
                dt = time.time() - t0
                run.log({"pool/samples": b.pool_size * b.n_prompts, "pool/seconds": dt,
                         "pool/samples_per_second": b.pool_size * b.n_prompts / dt})
                run.mark_done({"seconds": dt})
                self.timings["pool"] = dt
        if self._pool is None:
            self._pool = (run.id, load_pool(path))
        return self._pool

    def bon(self, proxies) -> list[Run]:
        from bon.pools import bon_points_for_proxy
        from lm.model import param_count

        pool_id, pool = self.pool()
        pool = recentred(pool)
        runs = []
        for proxy_id, proxy, _ in proxies:
            key = {"pool": pool_id, "proxy": proxy_id, "objectives": list(self.cfg.bon.objectives),
                   "uwo_lambda": self.cfg.bon.uwo_lambda}
            with self._stage(f"bon-{proxy.size.name}", key) as run:
                if not run.done:
                    scores = proxy.scores(pool.tokens.astype(np.int32), pool.mask, pool.prompt_len)
                    df = bon_points_for_proxy(
                        pool, scores, self.cfg.bon, rm_name=proxy.size.name, rm_params=proxy.rm_params,
                        data_size=proxy.data_size, seed=proxy.seeds[0], run_id=run.id,
                        policy_params=param_count(self.policy_model_cfg()),
                    )
                    run.write_points(df)
                    run.mark_done()
            runs.append(run)
        return runs

    # -- RL -----------------------------------------------------------------------------------
    def reward_fn(self, proxy, objective: str = "single"):
        """The proxy's recentred score (member 0, or an ensemble objective) as a pure jittable function."""
        import jax
        import jax.numpy as jnp

        from proxy_rm.ensemble import objective as ensemble_objective
        from proxy_rm.train import reward

        P = self.world.prompt_len
        graphdef, states = proxy.graphdef, proxy.states
        offset = jnp.asarray(proxy.offset, jnp.float32)
        lam = self.cfg.bon.uwo_lambda

        def fn(tokens, mask):
            scores = jax.vmap(lambda st: reward(graphdef, st, tokens, mask, P, proxy.pool))(states) - offset[:, None]
            return scores[0] if objective == "single" else ensemble_objective(objective, scores, lam=lam)

        return fn

    def gold_fn(self, init_means: dict):
        """Gold score and weighted component terms (they add up to the score), jittable, recentred so
        that the initial policy's mean of each is 0 (`init_means`: means over the BoN pool)."""
        weights = self.gold.weights

        def fn(tokens, mask):
            comps = self.gold.components(tokens, mask)
            return {k: (v if k == "score" else v * weights.get(k, 1.0)) - init_means[k] for k, v in comps.items()}

        return fn

    def rl(self, proxies) -> list[Run]:
        from rl.ppo import run_ppo

        rl = self.cfg.rl
        if not rl.enabled:
            return []
        # the full-data proxy of each size (the data-size sweep's proxies get BoN only)
        todo = [(i, p) for i, p, full in proxies if full and (not rl.proxies or p.size.name in rl.proxies)]
        grid = [(float(k), int(s)) for k in rl.kl_coefs for s in rl.seeds]
        _log(f"stage 5/6: PPO against {len(todo)} proxies, a grid of {len(grid)} (kl_coef, seed) points"
             " in one program each")
        bank = self.world.sample_prompts(np.random.default_rng([rl.prompt_seed, 5]), rl.prompt_bank)
        pool_id, pool = self.pool()
        gold_fn = self.gold_fn({k: float(np.mean(v, dtype=np.float64)) for k, v in pool.gold.items()})
        runs = []
        for proxy_id, proxy in todo:
            key = {"policy": self.policy_id(), "proxy": proxy_id, "pool": pool_id, "rl": to_dict(rl)}
            with self._stage(f"rl-{proxy.size.name}", key) as run:
                if not run.done:
                    t0 = time.time()
                    run_ppo(run, self.policy(), self.reward_fn(proxy), gold_fn, bank, rl.ppo, grid,
                            rm_params=proxy.rm_params,
                            extra={"rm_name": proxy.size.name, "data_size": proxy.data_size, "objective": "single",
                                   "run_id": run.id},
                            progress=self.progress)
                    self.timings[f"rl-{proxy.size.name}"] = time.time() - t0
                    _log(f"  {proxy.size.name}: {rl.ppo.updates} updates x {len(grid)} grid points, "
                         f"{time.time() - t0:.1f}s")
            runs.append(run)
        return runs

    # -- everything ---------------------------------------------------------------------------
    def run_all(self) -> dict:
        import pandas as pd

        from scaling.criteria import gao_checks
        from scaling.fitting import fit_table

        t_start = time.time()
        self.policy()
        proxies = self.proxies()
        runs = self.bon(proxies) + self.rl(proxies)
        _log("stage 6/6: points, fits, figures, report")
        points = pd.concat([r.points() for r in runs], ignore_index=True)
        atomic_write_parquet(self.out / "points.parquet", points)
        summary = pd.DataFrame([row | {"run_id": pid} for pid, p, _ in proxies for row in p.summary_rows()])
        atomic_write_parquet(self.out / "proxies.parquet", summary)
        fit_input, unfitted = fittable(points[points["objective"].fillna("single") == "single"])
        for g in unfitted:
            _log(f"not fitted (fewer than 3 points with KL > 0): {g}")
        fits = fit_table(fit_input, n_boot=200, seed=0)
        fits["unfitted"] = unfitted
        atomic_write_json(self.out / "fits.json", fits)
        # the slopes' intervals are asked of `small` and larger; `tiny` (and custom configs) report them
        checks = gao_checks(points, fits, ci_required=self.cfg.preset in ("small", "paper"))
        atomic_write_json(self.out / "criteria.json", {"checks": checks})
        info = {"preset": self.cfg.preset, "config_id": run_id(self.cfg), "config": to_dict(self.cfg),
                "timings": self.timings, "seconds": time.time() - t_start,
                "proxies": summary.to_dict(orient="records"), "runs": [r.id for r in runs]}
        atomic_write_json(self.out / MARKER, info)
        if self.cfg.figures:
            from figures import render_all
            from figures.data import load_data
            from figures.report import write_report

            data = load_data(self.out)
            render_all(data, self.out / "figures", None)
            write_report(self.out, self.out / "figures", data=data)
        return {"points": points, "fits": fits, "proxies": summary, "info": info, "checks": checks}


# ---------------------------------------------------------------------------------------------
# CLI


def add_arguments(p) -> None:
    p.add_argument("--preset", default="tiny", help="named frozen config: " + ", ".join(_presets.PRESETS))
    p.add_argument("--out", type=Path, help="study directory (created; reused if it holds this study); required to run")
    p.add_argument("--resume", action="store_true", help="require DIR to hold this study already and continue it")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set rl.kl_coefs=[0,0.05] (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def run(args) -> int:
    cfg = resolve(args.preset, args.overrides)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=2))
        return 0
    if args.out is None:
        raise UsageError("study: --out DIR is required (only --print-config runs without it)")
    prepare_out(args.out, cfg, args.resume)
    args.out.mkdir(parents=True, exist_ok=True)
    marker = args.out / MARKER
    if not marker.exists():  # claim the directory for this config before any stage writes
        atomic_write_json(marker, {"preset": cfg.preset, "config_id": run_id(cfg), "config": to_dict(cfg)})
    study = Study(cfg, args.out, progress=not args.no_progress)
    res = study.run_all()
    print_summary(res)
    return 0


# a fitted peak this many times beyond the largest measured d is printed as "beyond" (the law's
# extrapolation that far says only that the curve has not turned)
PEAK_BEYOND = 10.0


def summary_lines(fits: list[dict], names: dict) -> list[str]:
    """The end-of-study table: one line per fit; data_size and kl_coef columns when they vary."""
    extra = [c for c in ("data_size", "kl_coef") if len({r.get(c) for r in fits if r.get(c) is not None}) > 1]

    def f(x, w=8, p=3):
        return f"{x:>{w}.{p}f}" if isinstance(x, (int, float)) and x is not None else f"{'-':>{w}}"

    def peak(row, key, w, p):
        dp, dm = row.get("d_peak"), row.get("d_max")
        if isinstance(dp, (int, float)) and isinstance(dm, (int, float)) and dp > PEAK_BEYOND * dm:
            return f"{'beyond':>{w}}"
        return f(row.get(key), w, p)

    lines = [f"{'method':6} {'rm_name':>10} {'rm_params':>10} " + "".join(f"{c:>10} " for c in extra)
             + f"{'alpha':>8} {'beta':>8} {'r2':>6} {'d_peak':>7} {'gold_peak':>9} {'d_max':>6} {'n':>4}"]
    for row in fits:
        cols = "".join(f"{'-' if row.get(c) is None else format(row[c], 'g'):>10} " for c in extra)
        lines.append(
            f"{row.get('method', ''):6} {names.get(row.get('rm_params'), ''):>10} {row.get('rm_params', ''):>10} "
            f"{cols}{f(row.get('alpha'))} {f(row.get('beta'))} {f(row.get('r2'), 6, 2)} {peak(row, 'd_peak', 7, 2)} "
            f"{peak(row, 'gold_peak', 9, 3)} {f(row.get('d_max'), 6, 2)} {row.get('n_points', ''):>4}")
    return lines


def print_summary(res: dict) -> None:
    names = res["proxies"].drop_duplicates("rm_params").set_index("rm_params")["rm_name"].to_dict()
    for line in summary_lines(res["fits"]["fits"], names):
        print(line)
    if res.get("checks"):
        from scaling.criteria import check_lines

        print("Gao et al.'s qualitative results (criteria.json):")
        for line in check_lines(res["checks"]):
            print("  " + line)
    print(f"study written in {res['info']['seconds']:.0f}s")


