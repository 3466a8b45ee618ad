"""Trainer logs from TensorBoard event files and W&B CSV exports (read into `ingest.trainer_logs.TrainerLog`).

TensorBoard: every `events.out.tfevents.*` file at or below a path, one run a directory, read with
TensorBoard's own event reader (`tensorboard.backend.event_processing.event_accumulator`, no TensorFlow;
the optional extra `overopt[tb]`); scalar and one-element tensor summaries, one record a step. Where a
tag has two values at one step (HF writes its final summary at the last step, and TRL merges a partial
window of its metrics into it), the first (the periodic log) is kept.
W&B: a panel's "Export CSV": the x-axis first (`Step` or `train/global_step`), then `<run> - <metric>`
columns, with `__MIN`/`__MAX` envelopes (dropped) and `_step` columns (dropped); one log a run; an empty
cell is a metric not logged at that step. Panels are sampled down (to about 1,500 points) when a run
logged more. Files exported from separate panels are merged by run and step (`merge_logs`).
Both strip Hugging Face's `train/` prefix from names (its TensorBoard and W&B callbacks add it), so the
names are those of `trainer_state.json`.
"""

from __future__ import annotations

import logging
import math
import struct
from pathlib import Path

from core import safe_read
from core.errors import UsageError
from ingest.log_checks import algo_from_args, seed_from_args
from ingest.trainer_logs import TrainerLog

TB_EXTRA = "reading TensorBoard event files needs the tensorboard package: pip install 'overopt[tb]'"
EVENTS = "events.out.tfevents."


def _name(tag: str) -> str:
    return tag[len("train/") :] if tag.startswith("train/") else tag


def is_event_file(path: Path) -> bool:
    return EVENTS in path.name


def event_dirs(path: Path) -> list[Path]:
    """Directories at or below `path` holding TensorBoard event files (one run each), sorted."""
    return sorted({p.parent for p in path.rglob(EVENTS + "*") if p.is_file()})


def read_tensorboard(path: Path) -> list[TrainerLog]:
    """One TrainerLog per run directory of event files at or below `path` (or the one event file `path`)."""
    try:  # the optional extra `tb`
        from tensorboard.backend.event_processing.event_accumulator import SCALARS, TENSORS, EventAccumulator
        from tensorboard.util.tensor_util import make_ndarray
    except ImportError:
        raise UsageError(f"{path}: {TB_EXTRA}") from None
    logging.getLogger("tensorboard").setLevel(logging.ERROR)
    targets = [path] if path.is_file() else event_dirs(path)
    logs = []
    for target in targets:
        acc = EventAccumulator(str(target), size_guidance={SCALARS: 0, TENSORS: 0})
        try:
            acc.Reload()
        except Exception as e:  # noqa: BLE001 - a damaged event file is the user's file
            raise UsageError(f"unreadable TensorBoard events {target}: {type(e).__name__}") from None
        by_step: dict[int, dict] = {}
        tags = acc.Tags()
        for tag in tags.get("scalars", []):
            for ev in acc.Scalars(tag):
                by_step.setdefault(int(ev.step), {}).setdefault(_name(tag), float(ev.value))
        args = {}
        for tag in tags.get("tensors", []):
            for ev in acc.Tensors(tag):
                try:
                    arr = make_ndarray(ev.tensor_proto)
                except Exception:  # noqa: BLE001 - a non-numeric tensor (text, images) is not a metric
                    continue
                if arr.size == 1 and arr.dtype.kind in "fiu":
                    by_step.setdefault(int(ev.step), {}).setdefault(_name(tag), float(arr.reshape(())))
                elif tag.split("/")[0] == "args" and arr.size == 1 and arr.dtype.kind in "OSU":
                    args = _args(arr.reshape(()).item(), target)  # HF's TensorBoardCallback: the training arguments
        steps = sorted(by_step)
        records = [{"step": s, **by_step[s]} for s in steps]
        log = TrainerLog(records, str(target), [f"step {s}" for s in steps], "tensorboard", run_name(target, path))
        seed = seed_from_args(args, f"{target}: TensorBoard args")
        log.extra.update(args=args, seed=seed, algo=algo_from_args(args), seed_from="TensorBoard args")
        cut = truncated(target)
        if cut:
            log.note = f"{cut} is truncated after its last whole record (a run still writing, or a damaged copy)"
        logs.append(log)
    if not any(log.records for log in logs):
        raise UsageError(f"{path}: no scalars in the TensorBoard event files")
    return [log for log in logs if log.records]


def run_name(target: Path, path: Path) -> str:
    """A run of event files is named by its directory; HF writes them to OUTPUT_DIR/runs/<date_host>/, so there
    the trainer's output directory names the run."""
    d = target if target.is_dir() else target.parent
    if d.parent.name == "runs" and d.parent.parent != d.parent:
        return d.parent.parent.resolve().name
    return d.resolve().name


def _args(value, where: Path) -> dict:
    """HF's `args` text as a dict ({} when it is not a JSON object); an integer too long to read in it (a
    5,000-digit seed) is bad input naming the event file, never "no arguments"."""
    try:
        args = safe_read.loads(value.decode(errors="replace") if isinstance(value, bytes) else str(value))
    except safe_read.HugeInteger as e:
        raise UsageError(f"{where}: TensorBoard args: {e.msg}") from None
    except (ValueError, RecursionError):
        return {}
    return args if isinstance(args, dict) else {}


def truncated(target: Path) -> str | None:
    """The name of an event file at or in `target` whose last record is cut short (TFRecord framing: an
    8-byte length, 4-byte CRC, the data, 4-byte CRC); None when every file ends on a whole record."""
    files = [target] if target.is_file() else sorted(p for p in target.glob(EVENTS + "*") if p.is_file())
    for f in files:
        size, at = f.stat().st_size, 0
        with safe_read.open_file(f, safe_read.MAX_TABLE) as fh:
            while at < size:
                head = fh.read(8)
                if len(head) < 8:
                    return f.name
                at += 16 + struct.unpack("<Q", head)[0]
                if at > size:
                    return f.name
                fh.seek(at)
    return None


def is_wandb_header(columns) -> bool:
    """A W&B panel export: an x-axis column, then only `<run> - <metric>` columns."""
    cols = [str(c) for c in columns]
    return len(cols) >= 2 and " - " not in cols[0] and all(" - " in c for c in cols[1:])


def read_wandb_csv(path: Path, df) -> list[TrainerLog]:
    """One TrainerLog per run of a W&B CSV export (`df`: the file read by pandas, header as written)."""
    step_col = str(df.columns[0])
    runs: dict[str, dict[str, str]] = {}
    for col in map(str, df.columns[1:]):
        run, metric = col.rsplit(" - ", 1)
        if metric.endswith(("__MIN", "__MAX")) or metric == "_step":
            continue
        cols = runs.setdefault(run, {})
        if _name(metric) in cols:  # 'train/kl' and 'kl' of one run: never one of them picked silently
            raise UsageError(
                f"{path}: run {run!r} has two columns for '{_name(metric)}' ({cols[_name(metric)]!r} and {col!r}):"
                " export one of them"
            )
        cols[_name(metric)] = col
    logs = []
    for run, cols in runs.items():
        records, labels = [], []
        for i, row in enumerate(df.to_dict("records")):
            rec = {m: row[c] for m, c in cols.items() if not _empty(row[c])}
            if not rec:
                continue
            step = row[step_col]
            if not _empty(step):
                rec["step"] = step
            records.append(rec)
            labels.append(f"row {i + 2} ({step_col} {step})")
        logs.append(TrainerLog(records, str(path), labels, "wandb", run, missing_is_nan=True))
    if not any(log.records for log in logs):
        raise UsageError(f"{path}: a W&B export with no values")
    return logs


def _empty(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""


def merge_logs(logs: list[TrainerLog]) -> list[TrainerLog]:
    """W&B logs of one run from several files (one panel each) merged by step; other logs unchanged."""
    out: list[TrainerLog] = []
    merged: dict[str, TrainerLog] = {}
    for log in logs:
        if log.kind != "wandb":
            out.append(log)
            continue
        if log.run not in merged:
            merged[log.run] = TrainerLog([dict(r) for r in log.records], log.where, list(log.labels), "wandb", log.run)
            merged[log.run].missing_is_nan = True
            out.append(merged[log.run])
            continue
        base = merged[log.run]
        if log.where not in base.where.split(" + "):
            base.where += f" + {log.where}"
        at = {r.get("step"): r for r in base.records if "step" in r}
        for rec, label in zip(log.records, log.labels, strict=True):
            into = at.get(rec.get("step")) if "step" in rec else None
            if into is None:
                base.records.append(dict(rec))
                base.labels.append(label)
            else:
                for k, v in rec.items():
                    into.setdefault(k, v)
    return out
