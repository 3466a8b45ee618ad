"""The study pipeline: the walk over the declared stage graph (`study.stages`), then the finish step.

  lm -> labels -> proxy-<size> -> score-<size> -> bon-<size>, select-<size>;  lm -> pool;  rl-<size>
        -> study.finish (points, fits, criteria, selection, unseen size, figures, report)

Each stage instance is a run directory under DIR/runs whose id hashes the fields it declares it reads and
the ids of the instances it consumes (`study.stages.graph`), so a relaunch skips what is DONE and a changed
knob redoes only what reads it and what lies downstream. The same config and seed give the same numbers.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pandas as pd

from core import safe_read
from core.config import to_dict
from core.log import log
from core.mesh import describe, job_mesh, size
from core.store import atomic_write_json, run_id
from gold_rm.factory import formula_gold, make_gold
from gold_rm.gold import GoldRM
from gold_rm.interface import Gold
from gold_rm.world import World
from scaling.points import BON_PROMPTS
from study import memory, stages
from study.config import SEED_FIELDS, StudyConfig, config_value, replicate_config
from study.finish import render, write_results
from study.stages import gold as gold_stage
from study.stages import klsplit
from study.stages import probes as probe_stage
from study.stages import proxy as proxy_stage
from study.stages.graph import Instance
from study.stages.select import PREDICTIONS
from study.walk import Walk

MARKER = "study.json"  # DIR/study.json: the study's config id, its config and, once finished, its timings


class Study(Walk):
    """Runs (or finds) every stage instance of one study config under one runs root, then the finish step.

    The public interface of a stage's code (`study.stages.<stage>.compute(study, run, inst)`): `cfg` (the
    replicate's config), `world`, `gold(inst)` (the gold an instance uses), `formula` (the hand-written gold),
    `progress`, `timings`, `log`, `value(path)` (a config field), `output(inst)` (a consumed instance's outputs,
    loaded once)."""

    def __init__(self, cfg: StudyConfig, out: Path, progress: bool = True, runs_root: Path | None = None):
        self.requested = cfg  # as asked for (what DIR/study.json's config_id hashes)
        # the stages run the replicate's config: every seed derived from cfg.replicate
        super().__init__(replicate_config(cfg), out, stages.plan(cfg), progress, runs_root)
        self.world = World(self.cfg.world)
        self._formula: GoldRM | None = None

    # -- the interface stages use (and Walk's: value, output, stage, run_stage, runs) ---------------
    @property
    def formula(self) -> GoldRM:
        """The hand-written gold of the config (built once): the gold itself with gold.kind "formula", else the
        formula the learned gold is trained on and whose terms it reports."""
        if self._formula is None:
            self._formula = formula_gold(self.world, self.cfg.gold)
        return self._formula

    def gold(self, inst: Instance) -> Gold:
        """The gold instance `inst` uses (`gold_rm.interface.Gold`): the learned gold of the "gold" instance it
        consumes, or the formula gold built from the config when it consumes none (gold.kind "formula")."""
        if "gold" in inst.inputs:
            return self.output(inst.inputs["gold"])
        return make_gold(self.world, self.cfg.gold, formula=self.formula)

    # -- kept for callers --------------------------------------------------------------------------
    def proxy_jobs(self) -> list[tuple]:
        """(ProxySize, data_size or None) for every proxy the study trains."""
        return [(self.cfg.ladder.sizes[i], d) for i, d in proxy_stage.jobs(self.cfg)]

    # -- everything ---------------------------------------------------------------------------------
    def run_all(self) -> dict:
        """Every stage instance of the plan, then the finish step (study.finish) on DIR. Returns points,
        fits, proxies, info, checks."""
        t_start = time.time()
        stages.check_store(self.runs_root, create=self.scratch is None)  # a follower writes nothing there
        counts = Counter(i.stage.name for i in self.plan)  # stage kinds in plan order, instances of each
        mesh = describe(job_mesh())  # how this job runs (never in a key): grids, members, prompts split across it
        log(mesh)
        est = memory.estimate(self.cfg, size(job_mesh()))
        log(memory.describe(est))
        memory.check(est, memory.device_limit())  # UsageError (exit 2) when even the estimate cannot fit
        started: list[str] = []
        for inst in self.plan:
            name = inst.stage.name
            if name not in started:
                started.append(name)
                n = counts[name]
                log(f"stage {len(started)}/{len(counts)}: {name} ({n} instance{'s' * (n > 1)}): {inst.stage.doc}")
            self.run_stage(inst)
        if self.scratch is not None:  # a follower (core.multihost): process 0 writes the point's results
            return {"info": {"mesh": mesh, "computed": list(self.computed)}}
        log("finish: points, fits, criteria, figures, report")
        runs = self.runs("bon") + self.runs("select") + self.runs("rl") + self.runs("rl_objective") + self.runs("grpo")
        runs += self.runs("cppo") + self.runs("dpo")  # constrained PPO, direct alignment (issue 35)
        points = pd.concat([r.points() for r in runs if (r.path / "points.parquet").exists()], ignore_index=True)
        proxies = [(i, self.output(i)) for i in self.plan if i.stage.name == "proxy"]
        summary = pd.DataFrame([row | {"run_id": i.id} for i, p in proxies for row in p.summary_rows()])
        prompts = _concat(r.path / BON_PROMPTS for r in self.runs("bon"))
        preds = _concat(r.path / PREDICTIONS for r in self.runs("select"))
        probes = _concat(
            [r.path / probe_stage.TABLE for r in self.runs("probe")]
            + [r.path / klsplit.TABLE for r in self.runs("klsplit")]  # probe "kl_split" rows, after RL
        )
        for table in (points, summary, prompts, preds, probes):
            if table is not None:
                table["replicate"] = self.cfg.replicate
        res = write_results(
            self.out,
            points,
            summary,
            bon_prompts=prompts,
            predictions=preds,
            probes=probes,
            preset=self.cfg.preset,
            calibration=tuple(self.cfg.calibration_replicates),  # verdict.json: is this replicate held out
        )
        info = {
            "preset": self.cfg.preset,
            "config_id": run_id(self.requested),
            "store": stages.STORE_VERSION,
            "config": to_dict(self.requested),
            "replicate": self.cfg.replicate,
            "calibration_replicates": list(self.cfg.calibration_replicates),
            "held_out": self.cfg.replicate not in self.cfg.calibration_replicates,
            "seeds": {where: to_dict(config_value(self.cfg, where)) for where, _ in SEED_FIELDS},
            "timings": self.timings,
            "seconds": time.time() - t_start,
            "mesh": mesh,
            "proxies": summary.to_dict(orient="records"),
            "runs": [r.id for r in runs],
        }
        for run in self.runs("gold"):  # the learned gold's agreement with the formula (figures.report_gold)
            gold_report = safe_read.read_json(run.path / gold_stage.REPORT)
            gold_report.pop("history", None)
            atomic_write_json(self.out / gold_stage.REPORT, gold_report | {"replicate": self.cfg.replicate})
            info["gold"] = gold_report
        atomic_write_json(self.out / MARKER, info)
        if self.cfg.figures:
            render(self.out)
        return {"points": points, "fits": res["fits"], "proxies": summary, "info": info, "checks": res["checks"]}


def _concat(paths) -> pd.DataFrame | None:
    frames = [safe_read.read_parquet(p) for p in paths if p.exists()]
    return pd.concat(frames, ignore_index=True) if frames else None
