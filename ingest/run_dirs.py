"""Trainer runs in directories: one trainer output directory, or a parent holding several (one curve each).

A trainer output directory is read from its `trainer_state.json` (its own, else the latest `checkpoint-N/`'s:
`ingest.log_files.trainer_dir_state`), else from its TensorBoard event files (`OUTPUT_DIR/runs/<date_host>/`).
A parent directory is walked (at most `MAX_DEPTH` levels): every trainer output directory below it is a run,
named by its directory, and every directory of event files outside one is a run too. Nothing is dropped
quietly: each run's `note` says what was read (trainer_state.json or events), and the verbs print one line a
run. A run given twice, as its TensorBoard events and as its trainer_state.json (two inputs), is read once,
as its directory reads it (`one_source_a_run`). The optimizer each run records
(`ingest.log_checks.algo_from_text`: TRL's model card README.md, "This model was trained with GRPO", or the
directory's name) goes into `extra["algo"]`.
"""

from __future__ import annotations

from pathlib import Path

from core import safe_read
from core.errors import UsageError
from ingest.event_logs import EVENTS, read_tensorboard
from ingest.log_checks import algo_from_text, seed_from_args
from ingest.log_files import CHECKPOINT, read_trainer_state, trainer_dir_state
from ingest.trainer_logs import TrainerLog

MAX_DEPTH = 4
CARD_MAX = 200_000  # bytes of a model card read for the algorithm's name


def card_algo(path: Path) -> str | None:
    """The algorithm TRL's model card (README.md in the run or its latest checkpoint) names, else None."""
    for card in [path / "README.md", *sorted(path.glob("checkpoint-*/README.md"))[-1:]]:
        try:
            if card.is_file() and card.stat().st_size <= CARD_MAX:
                found = algo_from_text(card.read_text(errors="replace"))
                if found:
                    return found
        except OSError:
            continue
    return None


# JSON files beside a run (in its directory, then its latest checkpoint's) that may hold the run's arguments
# with their `seed` (e.g. `json.dump(args.to_dict(), ...)`). `training_args.bin`, where the Trainer saves them,
# is a pickle: unpickling runs code, so it is never read.
SEED_FILES = ("training_args.json", "trainer_args.json", "args.json", "train_args.json", "hparams.json", "config.json")
SEED_FILE_MAX = 1 << 20
NO_SEED = (
    "no seed recorded in a file overopt reads (trainer_state.json, TensorBoard args, or a JSON file beside the run:"
    f" {', '.join(SEED_FILES)}; training_args.bin is a pickle and is never unpickled)"
)


def sibling_seed(run_dir: Path, *more: Path) -> tuple[int | None, str | None]:
    """(seed, the file it came from) from the JSON argument files (`SEED_FILES`, each a JSON object with an
    integer `seed` at its top; a model's config.json has none) in a run's directory, then in `more` (its latest
    checkpoint's), else (None, None). Regular files under `SEED_FILE_MAX` bytes only; one that is not JSON is
    skipped (it may be no argument file), but one holding a seed that is no seed, or an integer too long to
    read (a 5,000-digit seed), is bad input naming the file, never "no seed"."""
    for d in dict.fromkeys([run_dir, *more]):
        for name in SEED_FILES:
            path = d / name
            try:
                if not safe_read.is_regular(path):
                    continue
                args = safe_read.read_json(path, SEED_FILE_MAX)
            except safe_read.HugeInteger as e:
                raise UsageError(f"{path}: {e.msg}: a seed file overopt cannot read; correct it or remove it") from None
            except (OSError, ValueError, RecursionError, UsageError):
                continue
            seed = seed_from_args(args, str(path))
            if seed is not None:
                return seed, str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)
    return None, None


EVENTS_NOT_READ = "its TensorBoard events not read (trainer_state.json is exact)"
"""A run's note where its trainer_state.json was read and its TensorBoard events were not."""


def read_trainer_dir(path: Path) -> TrainerLog | None:
    """The log of one trainer output (or checkpoint) directory from its trainer_state.json; None without one."""
    state = trainer_dir_state(path)
    if state is None:
        return None
    run_dir = path.resolve().parent if CHECKPOINT.fullmatch(path.resolve().name) else path.resolve()
    log = read_trainer_state(state[0], run=run_dir.name, note=state[1])
    log.extra["algo"] = card_algo(run_dir) or algo_from_text(run_dir.name)
    if log.extra.get("seed") is None:
        seed, where = sibling_seed(run_dir, state[0].resolve().parent)
        if seed is not None:
            log.extra.update(seed=seed, seed_from=where)
    if any(run_dir.glob("runs/*/" + EVENTS + "*")):
        log.note = ", ".join(filter(None, [log.note, EVENTS_NOT_READ]))
    return log


def _walk(path: Path, depth: int = 0):
    """(trainer output dirs, event dirs outside them) at or below `path`, sorted."""
    if trainer_dir_state(path) is not None:
        return [path], []
    events = [path] if any(p.is_file() for p in path.glob(EVENTS + "*")) else []
    runs: list[Path] = []
    if depth < MAX_DEPTH:
        for d in sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink()):
            if CHECKPOINT.fullmatch(d.name):
                continue
            r, e = _walk(d, depth + 1)
            runs += r
            events += e
    return runs, events


def trainer_runs(path: Path) -> list[TrainerLog]:
    """Every trainer run at or below the directory `path` (one log a run; [] when there is none)."""
    runs, events = _walk(path)
    logs = [log for d in runs if (log := read_trainer_dir(d)) is not None]
    for d in events:
        for log in read_tensorboard(d):
            owner = d.parent.parent if d.parent.name == "runs" else d
            log.extra["algo"] = log.extra.get("algo") or card_algo(owner) or algo_from_text(str(owner.name))
            if log.extra.get("seed") is None:  # TensorBoard args without a seed: the argument files beside the run
                seed, where = sibling_seed(owner)
                if seed is not None:
                    log.extra.update(seed=seed, seed_from=where)
            log.note = ", ".join(filter(None, ["TensorBoard events", log.note]))
            logs.append(log)
    seen: dict[str, int] = {}
    for log in logs:  # two runs with one name (two event dirs of one output dir): told apart by their path
        seen[log.run] = seen.get(log.run, 0) + 1
    for log in logs:
        if seen[log.run] > 1:
            log.run = f"{log.run}/{Path(log.where).name}"
    return logs


def run_dir_of(log: TrainerLog) -> Path | None:
    """The trainer output directory a log was written in: a trainer_state.json's directory (the run's, for a
    checkpoint's), OUTPUT_DIR for TensorBoard events in HF's OUTPUT_DIR/runs/<date_host>/; else None."""
    where = Path(log.where.split(" + ")[0]).resolve()
    if log.kind == "trainer_state":
        return where.parent.parent if CHECKPOINT.fullmatch(where.parent.name) else where.parent
    if log.kind == "tensorboard":
        d = where if where.is_dir() else where.parent
        return d.parent.parent if d.parent.name == "runs" else None
    return None


def one_source_a_run(logs: list[TrainerLog]) -> list[TrainerLog]:
    """The logs, less a run's TensorBoard events where its trainer_state.json is among them: TRL writes both for
    one run, and given as two inputs (`RUN RUN/runs`, or the two files) they were two curves (two seeds when
    pooled). The run is read as its directory reads it (trainer_state.json: exact, where events hold float32),
    and the kept log's note names the events not read."""
    states: dict = {}
    for log in logs:
        if log.kind == "trainer_state":
            states.setdefault(run_dir_of(log), log)
    kept = []
    for log in logs:
        state = states.get(run_dir_of(log)) if log.kind == "tensorboard" else None
        if state is None:
            kept.append(log)
            continue
        note = EVENTS_NOT_READ.replace("events", f"events {log.where}")  # which ones, where `read_trainer_dir` said
        state.note = (
            state.note.replace(EVENTS_NOT_READ, note)
            if EVENTS_NOT_READ in state.note
            else ", ".join(filter(None, [state.note, note]))
        )
        for key in ("seed", "algo"):  # what only the events' `args` record (the seed, the algorithm) is kept
            if state.extra.get(key) is None and log.extra.get(key) is not None:
                state.extra[key] = log.extra[key]
                if key == "seed":
                    state.extra["seed_from"] = f"{log.where}: TensorBoard args"
    return kept
