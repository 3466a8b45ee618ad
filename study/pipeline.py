"""The study pipeline: stage by stage, every stage a content-addressed run.

  world -> pretrain pi_init -> sample pairs, gold labels -> proxy ladder (+ ensembles, data sizes)
        -> BoN pool -> BoN points per proxy -> PPO grid per proxy -> study.finish (points, fits,
           criteria, figures, report)

Each stage is a run directory under DIR/runs whose id hashes the stage's own config together with
the ids of the stages it reads, so a relaunch skips what is DONE and a changed knob redoes only
what depends on it. The same config and seed give the same numbers.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

from bon.pools import bon_points_for_proxy, load_pool, make_pool, recentred, save_pool
from core.checkpoint import load_state, save_state
from core.config import id_dict, to_dict
from core.store import Run, atomic_write_bytes, atomic_write_json, atomic_write_parquet, run_id, stage_run
from gold_rm.gold import GoldRM
from gold_rm.labels import label_pairs
from gold_rm.world import World
from lm.model import ModelConfig, abstract, param_count
from lm.pretrain import pretrain
from lm.sampling import sample_many
from proxy_rm.ladder import load_proxy, model_config, save_proxy, train_proxy
from proxy_rm.train import Comparisons
from rl.ppo import Scorer
from rl.runner import run_ppo
from scaling.points import BON_PROMPTS
from study import selection_stage
from study.config import SEED_FIELDS, StudyConfig, config_value, n_train_comparisons, replicate_config
from study.finish import render, write_results

MARKER = "study.json"  # DIR/study.json: the study's config id, its config and, once finished, its timings


def _log(msg: str) -> None:
    print(f"[overopt] {msg}", file=sys.stderr, flush=True)


class Study:
    """Runs (or finds) every stage of one study config under one output directory."""

    def __init__(self, cfg: StudyConfig, out: Path, progress: bool = True, runs_root: Path | None = None):
        self.requested = cfg  # as asked for (what DIR/study.json's config_id hashes)
        self.cfg = cfg = replicate_config(cfg)  # what the stages run: every seed derived from cfg.replicate
        self.out = Path(out)
        self.runs_root = Path(runs_root) if runs_root is not None else self.out / "runs"
        self.progress = progress
        self.world = World(cfg.world)
        self.gold = GoldRM(self.world, cfg.gold)
        self.timings: dict[str, float] = {}
        self._policy = None
        self._pool = None

    def _stage(self, kind: str, key: dict):
        """The run of one stage (`core.store.stage_run`): locked while this process may compute it; a
        finished run failing its manifest is moved to DIR/quarantine/ and recomputed, and where the
        recomputation differs from it, the runs computed from it are too. DIR: the runs root's parent."""
        return stage_run(self.runs_root, {"stage": kind, **key}, kind, self.runs_root.parent / "quarantine", _log)

    # -- pi_init ----------------------------------------------------------------------------
    def policy_model_cfg(self):
        p = self.cfg.policy
        return ModelConfig(
            vocab_size=self.world.vocab_size,
            n_ctx=self.world.seq_len,
            n_layer=p.n_layer,
            d_model=p.d_model,
            n_head=p.n_head,
        )

    def _lm_key(self, mcfg) -> dict:
        """What an "lm" stage (an LM pretrained on the base corpus) depends on."""
        p = self.cfg.policy
        return {
            "world": id_dict(self.cfg.world),
            "model": id_dict(mcfg),
            "corpus_size": p.corpus_size,
            "pretrain": id_dict(p.pretrain),
        }

    def _pretrain_stage(self, mcfg) -> tuple:
        """Pretrain an LM of config `mcfg` on the base corpus (the policy, or a proxy backbone).
        Stage "lm": its id hashes the world, the model size and the pretraining settings."""
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
        c = self.cfg.labels
        key = {"policy": self.policy_id(), "gold": id_dict(self.cfg.gold), "labels": id_dict(c)}
        with self._stage("labels", key) as run:
            path = run.path / "comparisons.npz"
            if not run.done:
                _log("stage 2/6: sampling pairs from the initial policy and labelling them with the gold RM")
                t0 = time.time()
                graphdef, state = self.policy()
                rng = np.random.default_rng([c.seed, 3])
                prompts = self.world.sample_prompts(rng, c.n_comparisons)
                s = sample_many(
                    graphdef,
                    state,
                    prompts,
                    jax.random.PRNGKey(c.seed),
                    2,
                    max_new=self.world.max_new,
                    batch_size=4096,
                    progress=self.progress,
                )
                ta, tb = s.tokens[0::2], s.tokens[1::2]
                ma, mb = s.mask[0::2], s.mask[1::2]
                ga = np.asarray(self.gold.score(ta, ma), np.float64)
                gb = np.asarray(self.gold.score(tb, mb), np.float64)
                label = label_pairs(ga, gb, mode=c.mode, temperature=c.temperature, flip_frac=c.flip_frac, rng=rng)
                init_prompts = self.world.sample_prompts(rng, c.n_init_samples)
                init = sample_many(
                    graphdef,
                    state,
                    init_prompts,
                    jax.random.PRNGKey(c.seed + 1),
                    1,
                    max_new=self.world.max_new,
                    batch_size=4096,
                )
                buf = io.BytesIO()
                np.savez_compressed(
                    buf,
                    ta=ta,
                    ma=ma,
                    tb=tb,
                    mb=mb,
                    ga=ga,
                    gb=gb,
                    label=label,
                    init_tokens=init.tokens,
                    init_mask=init.mask,
                )
                atomic_write_bytes(path, buf.getvalue())
                agree = float(np.mean((ga > gb) == (label == 1)))
                run.log(
                    {"labels/n": c.n_comparisons, "labels/agree_with_gold": agree, "labels/frac_a": float(label.mean())}
                )
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
        labels_id, comps, init = self.comparisons()
        lad = self.cfg.ladder
        train_all, val = comps.split(lad.train.val_frac, seed=lad.seed)
        out = []
        jobs = self.proxy_jobs()
        _log(f"stage 3/6: training {len(jobs)} proxy reward models ({lad.ensemble_size} seed(s) each)")
        for size, data_size in jobs:
            ladder_key = {k: v for k, v in id_dict(lad).items() if k not in ("sizes", "data_sizes", "data_sweep_sizes")}
            key = {"labels": labels_id, "size": id_dict(size), "data_size": data_size, "ladder": ladder_key}
            with self._stage(f"proxy-{size.name}", key) as run:
                if not run.done:
                    t0 = time.time()
                    run.reset_metrics()
                    train = train_all if data_size is None else train_all.nested_subsets([data_size], seed=lad.seed)[0]
                    backbone = None
                    if lad.backbone:  # an LM of this size on the base corpus ("lm" stage, shared with pi_init)
                        mcfg = model_config(size, self.world.vocab_size, self.world.seq_len)
                        backbone = self._pretrain_stage(mcfg)[1]
                    proxy = train_proxy(
                        size,
                        lad,
                        train,
                        val,
                        init,
                        self.world.vocab_size,
                        self.world.seq_len,
                        backbone_state=backbone,
                        on_epoch=lambda e, row, r=run: r.log(row),
                    )
                    save_proxy(run.path / "proxy", proxy)
                    run.mark_done({"seconds": time.time() - t0})
                    self.timings[f"proxy-{size.name}" + (f"-{data_size}" if data_size else "")] = time.time() - t0
                    _log(
                        f"  {size.name}: {proxy.rm_params} params, {proxy.data_size} pairs, "
                        f"val acc {np.mean(proxy.val_acc):.3f}, {time.time() - t0:.1f}s"
                    )
            out.append((run.id, load_proxy(run.path / "proxy"), data_size is None))
        return out

    # -- best-of-n ----------------------------------------------------------------------------
    def pool(self):
        key = {"policy": self.policy_id(), "gold": id_dict(self.cfg.gold), "bon": id_dict(self.cfg.bon)}
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
                run.log(
                    {
                        "pool/samples": b.pool_size * b.n_prompts,
                        "pool/seconds": dt,
                        "pool/samples_per_second": b.pool_size * b.n_prompts / dt,
                    }
                )
                run.mark_done({"seconds": dt})
                self.timings["pool"] = dt
        if self._pool is None:
            self._pool = (run.id, load_pool(path))
        return self._pool

    def bon(self, proxies) -> list[Run]:
        pool_id, pool = self.pool()
        pool = recentred(pool)
        runs = []
        for proxy_id, proxy, _ in proxies:
            key = {
                "pool": pool_id,
                "proxy": proxy_id,
                "objectives": list(self.cfg.bon.objectives),
                "uwo_lambda": self.cfg.bon.uwo_lambda,
                # per-prompt estimates (bon_prompts.parquet) too: this key set ids apart from older stores
                "outputs": ["points", "bon_prompts"],
            }
            with self._stage(f"bon-{proxy.size.name}", key) as run:
                if not run.done:
                    scores = proxy.scores(pool.tokens.astype(np.int32), pool.mask, pool.prompt_len)
                    df, per_prompt = bon_points_for_proxy(
                        pool,
                        scores,
                        self.cfg.bon,
                        with_prompts=True,
                        rm_name=proxy.size.name,
                        rm_params=proxy.rm_params,
                        data_size=proxy.data_size,
                        seed=proxy.seeds[0],
                        run_id=run.id,
                        policy_params=param_count(self.policy_model_cfg()),
                    )
                    atomic_write_parquet(run.path / BON_PROMPTS, per_prompt)
                    run.write_points(df)
                    run.mark_done()
            runs.append(run)
        return runs

    # -- RL -----------------------------------------------------------------------------------
    def reward_scorer(self, proxy, objective: str = "single") -> Scorer:
        """The proxy's recentred score (member 0, or an ensemble objective): a pure function of its weights,
        which the PPO program takes as an argument (one compiled program serves every proxy of a shape)."""
        return Scorer(*proxy.reward_scorer(objective, lam=self.cfg.bon.uwo_lambda, prompt_len=self.world.prompt_len))

    def gold_scorer(self, pool) -> Scorer:
        """Gold score and weighted component terms (they add up to the score), recentred so that the
        initial policy's mean of each over the BoN pool is 0."""
        return Scorer(*self.gold.scorer({k: np.mean(v, dtype=np.float64) for k, v in pool.gold.items()}))

    def rl(self, proxies) -> list[Run]:
        rl = self.cfg.rl
        if not rl.enabled:
            return []
        # the full-data proxy of each size (the data-size sweep's proxies get BoN only)
        todo = [(i, p) for i, p, full in proxies if full and (not rl.proxies or p.size.name in rl.proxies)]
        grid = [(float(k), int(s)) for k in rl.kl_coefs for s in rl.seeds]
        _log(
            f"stage 5/6: PPO against {len(todo)} proxies, a grid of {len(grid)} (kl_coef, seed) points"
            " in one program each"
        )
        bank = self.world.sample_prompts(np.random.default_rng([rl.prompt_seed, 5]), rl.prompt_bank)
        pool_id, pool = self.pool()
        gold = self.gold_scorer(pool)
        runs = []
        for proxy_id, proxy in todo:
            key = {"policy": self.policy_id(), "proxy": proxy_id, "pool": pool_id, "rl": id_dict(rl)}
            with self._stage(f"rl-{proxy.size.name}", key) as run:
                if not run.done:
                    t0 = time.time()
                    run_ppo(
                        run,
                        self.policy(),
                        self.reward_scorer(proxy),
                        gold,
                        bank,
                        rl.ppo,
                        grid,
                        rm_params=proxy.rm_params,
                        extra={
                            "rm_name": proxy.size.name,
                            "data_size": proxy.data_size,
                            "objective": "single",
                            "run_id": run.id,
                        },
                        progress=self.progress,
                    )
                    self.timings[f"rl-{proxy.size.name}"] = time.time() - t0
                    _log(
                        f"  {proxy.size.name}: {rl.ppo.updates} updates x {len(grid)} grid points, "
                        f"{time.time() - t0:.1f}s"
                    )
            runs.append(run)
        return runs

    # -- everything ---------------------------------------------------------------------------
    def run_all(self) -> dict:
        """Every stage, then the finish pipeline (study.finish) on DIR. Returns points, fits, proxies, info, checks."""
        t_start = time.time()
        self.policy()
        proxies = self.proxies()
        runs = self.bon(proxies)
        select = selection_stage.select(self, proxies)
        runs += select + self.rl(proxies)
        _log("stage 6/6: points, fits, figures, report")
        points = pd.concat([r.points() for r in runs if (r.path / "points.parquet").exists()], ignore_index=True)
        preds = selection_stage.collect_predictions(select)
        summary = pd.DataFrame([row | {"run_id": pid} for pid, p, _ in proxies for row in p.summary_rows()])
        bon_runs = [r for r in runs if (r.path / BON_PROMPTS).exists()]
        prompts = (
            pd.concat([pd.read_parquet(r.path / BON_PROMPTS) for r in bon_runs], ignore_index=True)
            if bon_runs
            else None
        )
        for table in (points, summary, prompts, preds):
            if table is not None:
                table["replicate"] = self.cfg.replicate
        res = write_results(self.out, points, summary, bon_prompts=prompts, preset=self.cfg.preset)
        selection_stage.write_selection(self.out, points, preds)
        info = {
            "preset": self.cfg.preset,
            "config_id": run_id(self.requested),
            "config": to_dict(self.requested),
            "replicate": self.cfg.replicate,
            "calibration_replicates": list(self.cfg.calibration_replicates),
            "held_out": self.cfg.replicate not in self.cfg.calibration_replicates,
            "seeds": {where: to_dict(config_value(self.cfg, where)) for where, _ in SEED_FIELDS},
            "timings": self.timings,
            "seconds": time.time() - t_start,
            "proxies": summary.to_dict(orient="records"),
            "runs": [r.id for r in runs],
        }
        atomic_write_json(self.out / MARKER, info)
        if self.cfg.figures:
            render(self.out)
        return {"points": points, "fits": res["fits"], "proxies": summary, "info": info, "checks": res["checks"]}
