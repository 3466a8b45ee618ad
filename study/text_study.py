"""The text study (`overopt study --preset text-tiny`): Gao et al.'s pipeline on Hugging Face models in the
text world, walked over its declared stage graph (`study.stages.text`) with the synthetic study's run
store: each stage instance is a run directory under DIR/runs, verified when found DONE, so a killed study
resumes where it stopped and `--replicate K` redraws every seed (`study.text_config.TEXT_SEED_FIELDS`).

Stages (`study.stages.text_models`, `study.stages.text_train`): the models (tiny ones built with
`save_pretrained`), the prompt bank, gold-labelled pairs, the pool, a proxy per backbone (exported as a
Hugging Face sequence classifier to its run's hf/), best-of-n and PPO per proxy (the gold outside the
compiled program). The finish step is the synthetic study's (`study.finish`: points, proxies, fits, criteria,
figures, report); DIR/study.json holds the config, the runs, each stage's seconds and the gold's cost.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from core import safe_read
from core.config import to_dict
from core.store import atomic_write_json, atomic_write_parquet, run_id
from gold_rm.factory import gold_by_name
from gold_rm.text_world import TextWorld
from lm.hf.tokenizer import Prompts
from scaling.points import BON_PROMPTS
from study.finish import render, write_results
from study.stages.graph import STORE_VERSION, DeclaredView, Instance
from study.stages.store import check_store
from study.stages.text import text_plan
from study.stages.text_models import Policy, load_policy
from study.stages.text_train import SAMPLES
from study.text_config import TextStudyConfig, text_replicate_config
from study.walk import Walk

MARKER = "study.json"


def text_world(policy: Policy, bank, texts) -> TextWorld:
    """The text world of the bank's left-padded prompts (a `lm.sampling.PaddedBank`: what the gold decodes)."""
    eos, pad = policy.cfg.eos_id, policy.cfg.pad_id
    return TextWorld(
        tuple(texts), policy.tokenizer, eos, pad, Prompts(np.asarray(bank.ids), np.asarray(bank.offsets), 0)
    )


class TextStudy(Walk):
    """The walk over the text study's plan (see the module docstring). Beside `Walk`'s interface, its stages
    use `policy(inst)` (the policy of a model instance, imported once) and `gold(inst)` (the gold an instance
    consumes, on the text world of the prompts it consumes: one `TextGold`, its cost counted across stages)."""

    def __init__(self, cfg: TextStudyConfig, out: Path, progress: bool = True, runs_root: Path | None = None):
        self.requested = cfg
        super().__init__(text_replicate_config(cfg), out, text_plan(cfg), progress, runs_root)
        self._cache: dict = {}

    def run_stage(self, inst: Instance):
        """`Walk.run_stage` with `cfg` narrowed to the instance's declared reads (`graph.DeclaredView`): a stage
        that reads a field its key leaves out fails at once instead of reusing a run it should have redone."""
        full = self.cfg
        self.cfg = DeclaredView(full, inst.reads.values(), inst.stage.name)
        try:
            return super().run_stage(inst)
        finally:
            self.cfg = full

    def policy(self, model: Instance) -> Policy:
        if ("policy", model.id) not in self._cache:
            path = self.output(model)[1]
            self._cache[("policy", model.id)] = load_policy(path, self.cfg.compute_dtype)
        return self._cache[("policy", model.id)]

    def gold(self, inst: Instance):
        key = ("gold", inst.inputs["gold"].id, inst.inputs["prompts"].id)
        if key not in self._cache:
            bank, texts, _ = self.output(inst.inputs["prompts"])
            world = text_world(self.policy(inst.inputs["policy"]), bank, texts)
            scheme, path = self.output(inst.inputs["gold"])
            ref = f"{scheme}:{path}"
            self._cache[key] = gold_by_name(
                ref, text_world=world, batch_size=self.cfg.gold_batch, device=self.cfg.gold_device
            )
        return self._cache[key]

    def run_all(self) -> dict:
        """Every stage instance, then the finish step. Returns points, fits, proxies, info, checks."""
        t_start = time.time()
        check_store(self.runs_root)
        for inst in self.plan:
            t0 = time.perf_counter()
            run = self.run_stage(inst)
            self.timings[inst.label] = round(time.perf_counter() - t0, 2)
            self.log(f"{inst.label}: {run.id}")
        runs = self.runs("text_bon") + self.runs("text_ppo")
        points = pd.concat([r.points() for r in runs], ignore_index=True)
        proxies = pd.DataFrame(
            [{"rm_name": p["name"], "rm_params": p["rm_params"], "data_size": p["data_size"], "seed": self.cfg.seed,
              "member": 0, "val_loss": p["val_loss"], "val_acc": p["val_acc"], "offset": self.output(b)["offset"],
              "backbone": True, "family": p["family"], "hf": str(p["hf"]), "run_id": i.id}
             for i, b in self._pairs() for p in [self.output(i)]]
        )  # fmt: skip
        prompts = pd.concat([safe_read.read_parquet(r.path / BON_PROMPTS) for r in self.runs("text_bon")])
        samples = pd.concat([safe_read.read_parquet(r.path / SAMPLES) for r in self.runs("text_bon")])
        for table in (points, proxies, prompts, samples):
            table["replicate"] = self.cfg.replicate
        atomic_write_parquet(self.out / SAMPLES, samples)
        res = write_results(self.out, points, proxies, bon_prompts=prompts, preset=self.cfg.preset)
        render(self.out)
        bank, texts, truncated = self.output(next(i for i in self.plan if i.label == "prompts"))
        info = {
            "preset": self.cfg.preset,
            "config_id": run_id(self.requested),
            "store": STORE_VERSION,
            "config": to_dict(self.requested),
            "replicate": self.cfg.replicate,
            "seeds": {"seed": self.cfg.seed, "seeds": list(self.cfg.seeds)},
            "timings": self.timings,
            "seconds": time.time() - t_start,
            "gold_cost": self.gold_cost(),
            "prompt_tokens": int(bank.shape[1]),
            "prompts": len(texts),
            "prompts_truncated": truncated,  # kept their last prompt_tokens (shorter ones are left-padded)
            "runs": [r.id for name in ("text_model", "text_prompts", "text_labels", "text_pool", "text_proxy",
                                       "text_bon", "text_ppo") for r in self.runs(name)],
        }  # fmt: skip
        atomic_write_json(self.out / MARKER, info)
        return {**res, "proxies": proxies, "info": info}

    def _pairs(self) -> list[tuple[Instance, Instance]]:
        """(proxy instance, its bon instance) of each backbone."""
        by = {i.label: i for i in self.plan}
        return [(by[i.label], by[f"bon{i.label[5:]}"]) for i in self.plan if i.stage.name == "text_proxy"]

    def gold_cost(self) -> dict:
        """The gold's rows and seconds over every stage that called it (stored in each run's DONE: a resumed
        study counts what its reused runs took when they were computed)."""
        rows = seconds = 0.0
        for name in ("text_labels", "text_pool", "text_ppo"):
            for r in self.runs(name):
                done = safe_read.read_json(r.path / "DONE")
                rows, seconds = rows + done.get("gold_rows", 0), seconds + done.get("gold_seconds", 0.0)
        model = next(i for i in self.plan if i.label == "model:gold")
        scheme, path = self.output(model)
        return {"ref": f"{scheme}:{path}", "rows": int(rows), "seconds": seconds}


def run(cfg: TextStudyConfig, out: Path, progress: bool = True) -> dict:
    """The whole text study into `out` (resuming what DIR/runs holds). Returns the write_results summary."""
    return TextStudy(cfg, out, progress).run_all()
