"""The walk over a plan of stage instances (`study.stages.graph`), shared by the synthetic study
(`study.pipeline.Study`) and the text study (`study.text_study.TextStudy`): each instance is a run directory
under the runs root, found DONE (and verified) or computed, its outputs loaded once.

With several processes on one point (`core.multihost`), process 0 walks the store as above and tells the
others, before each instance, whether it computes it; a follower (`Walk.follow`) computes the same
instances (its share of every sharded computation) into a private scratch run, takes no lock, writes nothing
in the store, and reads every instance's outputs from process 0's run once it is stored."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from core import multihost
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
        self.scratch: Path | None = None  # a follower's own runs (`follow`)
        self.computed: list[str] = []  # ids of the instances this process computed (not found DONE)

    def follow(self, scratch: Path) -> None:
        """Make this walk a follower's (a process other than 0 of a multi-process job): it computes into runs
        under `scratch` (outside the store) and reads every instance from the store once process 0 stored it."""
        self.scratch = Path(scratch)

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
        if self.scratch is not None:
            return self._follow_stage(inst)
        with self.stage(inst) as run:
            self._runs[inst.label] = run
            todo = not run.done
            if multihost.say(f"stage {inst.id}", "compute" if todo else "done") == "compute":
                multihost.barrier(f"copied {inst.id}")  # the followers copied what a resumed run holds
                inst.stage.compute(self, run, inst)
                self.computed.append(inst.id)
        multihost.barrier(f"stored {inst.id}")
        return run

    def _follow_stage(self, inst: Instance) -> Run:
        """A follower's instance: computed with process 0 into a scratch copy of its run (a resumed run's
        checkpoint included) when process 0 computes it; its outputs then read from process 0's run."""
        stored = Run(self.runs_root / inst.id)
        if multihost.hear(f"stage {inst.id}") == "compute":
            own = _ScratchRun(self.scratch / inst.id)
            shutil.rmtree(own.path, ignore_errors=True)
            shutil.copytree(stored.path, own.path, ignore=lambda d, names: [n for n in names if n.startswith(".")])
            multihost.barrier(f"copied {inst.id}")
            self._runs[inst.label] = own
            inst.stage.compute(self, own, inst)
            self.computed.append(inst.id)
        multihost.barrier(f"stored {inst.id}")
        self._runs[inst.label] = stored
        self._outputs.pop(inst.label, None)  # loaded from the stored run, as on process 0
        if not stored.done or not os.path.isdir(stored.path):
            raise RuntimeError(f"process 0 did not store {inst.id}")
        return stored

    def runs(self, stage: str) -> list[Run]:
        """The runs of every instance of `stage` walked so far, in plan order."""
        return [self._runs[i.label] for i in self.plan if i.stage.name == stage and i.label in self._runs]


class _ScratchRun(Run):
    """A follower's copy of a run: what its stage writes goes there, and nothing is marked DONE (no manifest
    to compute: the follower reads the run process 0 stored)."""

    def mark_done(self, info: dict | None = None) -> None:
        pass
