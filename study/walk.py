"""The walk over a plan of stage instances (`study.stages.graph`), shared by the synthetic study
(`study.pipeline.Study`) and the text study (`study.text_study.TextStudy`): each instance is a run directory
under the runs root, found DONE (and verified) or computed, its outputs loaded once."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from core.log import log
from core.store import Run, stage_run
from study.stages.graph import Instance, value_at


class Walk:
    """The stage-facing interface both studies share: `cfg` (the replicate's config), `value(path)`,
    `output(inst)`, `stage(inst)`, `run_stage(inst)`, `runs(stage)`, `timings`, `log`, `progress`."""

    def __init__(self, cfg, out: Path, plan: list[Instance], progress: bool = True, runs_root: Path | None = None):
        self.cfg = cfg
        self.out = Path(out)
        self.runs_root = Path(runs_root) if runs_root is not None else self.out / "runs"
        self.progress = progress
        self.plan = plan
        self.timings: dict[str, float] = {}
        self.log = log
        self._runs: dict[str, Run] = {}
        self._outputs: dict[str, object] = {}

    def value(self, path: str):
        """The value of config field `path` in the replicate's config (e.g. "ladder.sizes[1]")."""
        return value_at(self.cfg, path)

    def output(self, inst: Instance):
        """The outputs of stage instance `inst` (run before: the plan is topological), loaded once."""
        if inst.label not in self._outputs:
            self._outputs[inst.label] = inst.stage.load(self, self._runs[inst.label], inst)
        return self._outputs[inst.label]

    @contextmanager
    def stage(self, inst: Instance):
        """The run of one stage instance (`core.store.stage_run`), for a `with` block that computes it unless
        it is DONE: locked while this process may compute it (parallel jobs sharing a stage compute it
        once); a finished run failing its manifest is moved to DIR/quarantine/ and recomputed, and where
        the recomputation differs, the runs computed from it are too. DIR: the runs root's parent."""
        with stage_run(self.runs_root, inst.key, inst.prefix, self.runs_root.parent / "quarantine", log) as run:
            yield run

    def run_stage(self, inst: Instance) -> Run:
        """Compute (or find DONE) one instance; its inputs must have been run."""
        with self.stage(inst) as run:
            self._runs[inst.label] = run
            if not run.done:
                inst.stage.compute(self, run, inst)
        return run

    def runs(self, stage: str) -> list[Run]:
        """The runs of every instance of `stage` walked so far, in plan order."""
        return [self._runs[i.label] for i in self.plan if i.stage.name == stage and i.label in self._runs]
