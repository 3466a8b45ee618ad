"""Trainer log files: a Hugging Face `trainer_state.json`, a JSON-lines dump of its `log_history`, a table
(CSV/Parquet) of log rows, and trainer output or `checkpoint-N/` directories (read into
`ingest.trainer_logs.TrainerLog`; TensorBoard and W&B exports are in `ingest.event_logs`).

A trainer output directory holds the model (a Hugging Face `config.json` with `model_type`, which is not an
overopt run), `checkpoint-N/` directories (each with the `trainer_state.json` of the whole history up to
step N) and, only when `trainer.save_state()` was called, a `trainer_state.json` of its own.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from core import safe_read
from core.errors import UsageError, show
from ingest.log_checks import seed_from_args
from ingest.trainer_logs import STEP_KEYS, TrainerLog, is_trainer_log

CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def _label_step(prefix: str, rec: dict) -> str:
    step = next((rec[k] for k in STEP_KEYS if k in rec), None)
    return f"{prefix} (step {show(step, 20)})" if step is not None else prefix


def read_trainer_state(path: Path, run: str | None = None, note: str = "") -> TrainerLog:
    """A Hugging Face `trainer_state.json`: its `log_history` entries."""
    try:
        state = safe_read.loads(safe_read.read_text(path, safe_read.MAX_LOG))
    except (ValueError, RecursionError) as e:  # JSON, UTF-8, an integer beyond Python's digit limit
        raise UsageError(f"unreadable file {path}: {(str(e).splitlines() or [type(e).__name__])[0][:200]}") from None
    if isinstance(state, dict) and ("model_type" in state or "architectures" in state):
        raise UsageError(f"{path} is a Hugging Face model config, not a log: give the trainer_state.json")
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise UsageError(f"unreadable format: {path} (a .json input must hold a log_history list)")
    bad = [(i, e) for i, e in enumerate(state["log_history"]) if not isinstance(e, dict)]
    if bad:  # never dropped quietly: the row count would claim entries that were not read
        i, e = bad[0]
        raise UsageError(
            f"{path}: log_history[{i}] is {show(e, 40)}, not an object ({len(bad)} of"
            f" {len(state['log_history'])} entries are not objects)"
        )
    recs = list(enumerate(state["log_history"]))
    labels = [_label_step(f"log_history[{i}]", e) for i, e in recs]
    if run is None:
        parent = path.resolve().parent
        run = parent.parent.name if CHECKPOINT.fullmatch(parent.name) else parent.name
    log = TrainerLog([e for _, e in recs], str(path), labels, "trainer_state", run, note)
    seed = state_seed(state, str(path))
    if seed is not None:
        log.extra.update(seed=seed, seed_from=path.name)
    return log


def state_seed(state: dict, where: str):
    """The seed a trainer_state.json (`where`) records: its own `seed`, or `trial_params.seed` (a hyperparameter
    search's trial), an int; else None (Hugging Face's Trainer writes no seed there by default); a seed that is
    not one is bad input (`ingest.log_checks.seed_from_args`)."""
    for holder in (state, state.get("trial_params")):
        if isinstance(holder, dict):
            seed = seed_from_args(holder, f"{where}{'' if holder is state else ': trial_params'}")
            if seed is not None:
                return seed
    return None


def read_jsonl_log(path: Path, text: str) -> TrainerLog | None:
    """A JSON-lines file whose records look like a trainer's log (e.g. `log_history` dumped a line each);
    None when it is not one (a points table), or a line is not a JSON object (the table reader says why)."""
    records, labels = [], []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = safe_read.loads(line)
        except (ValueError, RecursionError):
            return None
        if not isinstance(rec, dict):
            return None
        records.append(rec)
        labels.append(_label_step(f"line {i}", rec))
    keys = {k for r in records for k in r}
    if not records or not is_trainer_log(keys):
        return None
    return TrainerLog(records, str(path), labels, "jsonl", path.stem)


def table_log(df, where: str, kind: str = "table", run: str | None = None) -> TrainerLog:
    """A DataFrame holding a trainer's log (a CSV or Parquet file): a NaN cell is a key not logged."""
    records = [{k: v for k, v in rec.items() if not _is_nan(v)} for rec in df.to_dict("records")]
    labels = [_label_step(f"row {i + 2 if kind != 'parquet' else i}", r) for i, r in enumerate(records)]
    return TrainerLog(records, where, labels, kind, run, missing_is_nan=True)


def _is_nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def trainer_dir_state(path: Path) -> tuple[Path, str] | None:
    """(trainer_state.json, note) of a trainer output directory or checkpoint directory: `path`'s own
    (a root one is written by `trainer.save_state()`), else the latest `checkpoint-N/`'s (never both: each
    holds the whole history up to its step); None when there is neither."""
    own = path / "trainer_state.json"
    if own.is_file():
        return own, ""
    ckpts = []
    for d in path.iterdir():
        m = CHECKPOINT.fullmatch(d.name)
        if m and (d / "trainer_state.json").is_file():
            ckpts.append((int(m.group(1)), d / "trainer_state.json"))
    if not ckpts:
        return None
    ckpts.sort()
    note = f"the latest of {len(ckpts)} checkpoints" if len(ckpts) > 1 else ""
    return ckpts[-1][1], note


def hf_model_config(path: Path) -> str | None:
    """The model_type (or architecture) when `path` is a Hugging Face model's config.json, else None."""
    try:
        if path.stat().st_size > 1_000_000:
            return None
        cfg = safe_read.read_json(path)
    except (OSError, ValueError, RecursionError, UsageError):
        return None
    if not isinstance(cfg, dict) or not ("model_type" in cfg or "architectures" in cfg):
        return None
    arch = cfg.get("architectures")
    return str(cfg.get("model_type") or (arch[0] if isinstance(arch, list) and arch else "model"))
