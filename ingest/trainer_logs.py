"""Trainer logs as points: what TRL, OpenRLHF and lm-human-preferences log, their KL units, and the rows.

A trainer log is a list of records (one a logging call: key -> value; a key is absent where that call did
not log it). Sources: a Hugging Face `trainer_state.json` (`log_history`), a JSON-lines dump of it, a
trainer output directory or `checkpoint-N/` (`trainer_dir_state`), TensorBoard events and W&B CSV exports
(`ingest.event_logs`). `log_frame` turns one log into points rows: the KL and gold keys found (known
names per trainer, or the user's), the rows that carry both (summary and eval entries are skipped), a
per-token KL converted to a per-sequence one with the mean completion length or refused, and a `source`
dict saying what was used.

KL units (each checked in the trainer's own source, see README "Fitting your own runs"):
- per token (a masked mean over completion tokens): TRL GRPOTrainer and the GRPO-like RLOOTrainer `kl`
  (logged only when beta != 0), OpenRLHF `kl`;
- per sequence (the sum over response tokens, mean over the batch): TRL PPOTrainer / PPOv2 / the
  PPOv2-style RLOOTrainer and the legacy PPOTrainer (<= 0.11) `objective/kl`, lm-human-preferences
  `objective/kl`.
Gao et al.'s KL is the KL of the whole response (per sequence). kl_per_token * mean completion length
is a per-sequence KL only approximately: both are batch means, and TRL measures the length before it
masks truncated completions.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field, replace

import pandas as pd

from core.errors import UsageError, all_keys, show
from ingest.log_checks import check_steps, clip_kl, eval_view


@dataclass(frozen=True)
class Trainer:
    """One trainer's log layout: its KL key and units, the keys that identify it, its length and proxy keys."""

    name: str
    kl: str
    per_token: bool
    markers: tuple[str, ...]  # any of these keys identifies the trainer
    length: tuple[str, ...] = ()  # mean completion length keys, in tokens (for --kl-per-token)
    proxy: tuple[str, ...] = ()  # the reward it optimizes (the proxy)
    algo: str | None = None  # the optimizer, when the trainer runs only one (GRPO and RLOO share a layout)


# the order matters: lm-human-preferences also logs objective/kl_coef, which marks the legacy TRL PPO
TRAINERS = (
    Trainer(
        "lm-human-preferences",
        "objective/kl",
        False,
        ("objective/score", "objective/score_total", "ppo/loss/total", "elapsed/fps"),
        proxy=("objective/score",),
        algo="ppo",
    ),
    Trainer(
        "TRL PPO (<= 0.11)",
        "objective/kl",
        False,
        ("ppo/mean_scores", "env/reward_mean", "ppo/mean_non_score_reward", "objective/kl_coef", "objective/kl_dist"),
        proxy=("env/reward_mean", "ppo/mean_scores"),
        algo="ppo",
    ),
    Trainer(
        "TRL PPO/RLOO (PPOv2-style)",
        "objective/kl",
        False,
        ("objective/scores", "objective/rlhf_reward", "objective/non_score_reward", "policy/approxkl_avg"),
        proxy=("objective/scores",),
    ),
    Trainer(
        "OpenRLHF",
        "kl",
        True,
        ("response_length", "policy_loss", "actor_lr", "ppo_clip_ratio", "total_length"),
        length=("response_length",),
        proxy=("reward",),
        algo="ppo",
    ),
    Trainer(
        "TRL GRPO/RLOO",
        "kl",
        True,
        (
            "completions/mean_length",
            "completion_length",
            "frac_reward_zero_std",
            "reward_std",
            "num_tokens",
            "rewards/",
        ),
        length=("completions/mean_length", "completion_length"),  # the second before TRL 0.16
        proxy=("reward",),
    ),
)
# keys that mark a table as a trainer log rather than a points table (besides every trainer's markers)
LOG_MARKERS = ("objective/kl", "learning_rate", "grad_norm", "train_runtime")
GOLD_NAMES = ("gold", "rewards/gold/mean", "rewards/gold")  # what the default --gold-col finds in a trainer log
SUMMARY_KEY = "train_runtime"  # HF's final summary entry (TRL merges a partial window of metrics into it)
MAX_ABS = 1e12  # a logged KL, gold or length beyond this is a unit or parsing mistake (scaling.points' bound)
STEP_KEYS = ("step", "global_step", "train/global_step", "Step")
GRPO_BETA = (
    "TRL's GRPO and RLOO log 'kl' only when beta != 0 (recent TRL's default beta is 0.0): train with"
    " e.g. GRPOConfig(beta=0.04), or compute the KL to the reference offline"
)


def _has(keys, marker: str) -> bool:
    return any(k.startswith(marker) for k in keys) if marker.endswith("/") else marker in keys


def identify(keys) -> Trainer | None:
    """The trainer whose marker keys appear among `keys` (first match in TRAINERS), else None."""
    keys = set(keys)
    return next((t for t in TRAINERS if any(_has(keys, m) for m in t.markers)), None)


def is_trainer_log(keys) -> bool:
    """Whether a table with these columns is a trainer's log (not an overopt points table)."""
    keys = set(keys)
    return identify(keys) is not None or any(k in keys for k in LOG_MARKERS)


@dataclass
class TrainerLog:
    """One run's log. `labels[i]` names record i in messages ("log_history[3] (step 40)", "line 4")."""

    records: list[dict]
    where: str  # the file (or directory) it came from
    labels: list[str]
    kind: str  # trainer_state, jsonl, tensorboard, wandb, table
    run: str | None = None
    note: str = ""  # e.g. "latest of 3 checkpoints"
    missing_is_nan: bool = False  # a NaN cell means "not logged" (tables, W&B CSV), not a bad value
    extra: dict = field(default_factory=dict)

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)


# ---- from a log to points rows


def _resolve(name: str, keys: list[str]) -> str | None:
    """`name` among keys, or its TensorBoard/W&B spelling with or without HF's 'train/' prefix."""
    if name in keys:
        return name
    alt = name[len("train/") :] if name.startswith("train/") else f"train/{name}"
    return alt if alt in keys else None


def close_names(name: str, keys: list[str], hint: str = "") -> str:
    """'; close: 'a', 'b'' for the keys like `name` (difflib, or holding `hint`), '' when none."""
    close = difflib.get_close_matches(name, keys, n=4, cutoff=0.6)
    close += [k for k in keys if hint and hint in k.lower() and k not in close][:4]
    return f" (close: {', '.join(repr(k) for k in close[:6])})" if close else ""


def _entry(log: TrainerLog) -> str:
    return "log_history entry" if log.kind == "trainer_state" else "log entry"


def _kl_key(log: TrainerLog, keys: list[str], kl_col: str, trainer: Trainer | None, gold_col: str) -> str:
    if kl_col != "kl":  # the user's name
        found = _resolve(kl_col, keys)
        if found is None:
            raise UsageError(
                f"{log.where}: no {_entry(log)} has both '{kl_col}' and '{gold_col}': no KL key '{kl_col}'"
                f"{close_names(kl_col, keys, 'kl')} (keys found: {all_keys(keys)})"
            )
        return found
    for name in ([trainer.kl] if trainer else []) + ["kl", "objective/kl"]:
        found = _resolve(name, keys)
        if found is not None:
            return found
    why = GRPO_BETA if trainer is not None and trainer.per_token else "name it with --kl-col"
    of = f" of {trainer.name}" if trainer else ""
    raise UsageError(
        f"{log.where}: no {_entry(log)} has both 'kl' and '{gold_col}': no KL key in the log{of}; {why}"
        f"{close_names('kl', keys, 'kl')} (keys found: {all_keys(keys)})"
    )


def _gold_key(
    log: TrainerLog, keys: list[str], gold_col: str, trainer: Trainer | None, kl_col: str, kl_key: str
) -> str:
    for name in GOLD_NAMES if gold_col == "gold" else (gold_col,):
        found = _resolve(name, keys)
        if found is not None:
            return found
    proxy = next((p for p in (trainer.proxy if trainer else ()) if _resolve(p, keys)), "reward")
    raise UsageError(
        f"{log.where}: no {_entry(log)} has both '{kl_col}' and '{gold_col}': the KL is there as '{kl_key}', but"
        f" no gold key '{gold_col}'{close_names(gold_col, keys, 'gold')}; a trainer logs the reward it optimizes"
        f" (the proxy, e.g. '{proxy}'): log the gold score too (in TRL, a zero-weight reward function named gold)"
        f" and pass --gold-col rewards/gold/mean (keys found: {all_keys(keys)})"
    )


def _number(log: TrainerLog, i: int, key: str, value) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok and isinstance(value, int):
        ok = abs(value) <= MAX_ABS  # an integer of any length is read: one beyond float's range is bad input
    if not ok or not math.isfinite(value) or abs(value) > MAX_ABS:
        raise UsageError(f"{log.where}: {log.labels[i]}: '{key}' is {show(value, 30)}, not a finite number")
    return float(value)


def log_frame(
    log: TrainerLog, kl_col: str = "kl", gold_col: str = "gold", kl_per_token=None, *, evals=False, algo=None
):
    """Points rows of one trainer log, and a `source` dict saying what was used.

    Arguments: log; kl_col / gold_col ("kl" and "gold": the trainer's known names; else the user's, with or
    without HF's 'train/' prefix); kl_per_token: None, a length key, or a number (tokens per response);
    evals: read the evaluation entries (`eval_kl`, `eval_rewards/gold/mean`: `log_checks.eval_view`);
    algo: the optimizer's name (else `log_checks.algo_of`'s guess).
    Rows: the records that carry both keys, but the final summary entry (train_runtime), steps strictly
    increasing (`log_checks.check_steps`), KL slightly below 0 clipped (`log_checks.clip_kl`: source
    `clipped`). Columns: every scalar key of those records, `kl` (per sequence where converted; the logged
    value kept in `kl_per_token`), `gold`, `proxy` (the trainer's own reward, when known and not the gold),
    `step`, `method` "rl" where absent, `algo`, `run`.
    Raises: UsageError for a missing key (every key listed, close matches first), a logged non-finite
    value (naming file and row), a per-token KL without kl_per_token, a step out of order, a clearly
    negative KL.
    """
    if evals:
        records, labels = eval_view(log.records, log.labels)
        if not records:
            raise UsageError(f"{log.where}: --eval: no evaluation entries (keys starting eval_ or eval/)")
        log = replace(log, records=records, labels=labels)
    keys = log.keys()
    trainer = identify(keys)
    kl_key = _kl_key(log, keys, kl_col, trainer, gold_col)
    gold_key = _gold_key(log, keys, gold_col, trainer, kl_col, kl_key)
    if trainer is not None and kl_key in (trainer.kl, f"train/{trainer.kl}"):
        units = "per-token" if trainer.per_token else "per-sequence"
    else:
        units = "unknown"
    by_step = log.kind in ("tensorboard", "wandb")  # records merged by step: a summary key is no summary row
    used = [i for i, r in enumerate(log.records) if kl_key in r and gold_key in r and (by_step or SUMMARY_KEY not in r)]
    if not used:
        raise UsageError(
            f"{log.where}: no {_entry(log)} has both '{kl_key}' and '{gold_key}' (each is logged, never together;"
            f" summary entries with {SUMMARY_KEY} do not count)"
        )
    step_key = next((k for k in STEP_KEYS if any(k in log.records[i] for i in used)), None)
    check_steps(log.where, [log.labels[i] for i in used], [log.records[i].get(step_key) for i in used])
    kl = [_number(log, i, kl_key, log.records[i][kl_key]) for i in used]
    gold = [_number(log, i, gold_key, log.records[i][gold_key]) for i in used]
    pre = "eval_" if evals else ""
    source = {"input": log.where, "format": log.kind, "run": log.run, "trainer": trainer.name if trainer else None}
    source["kl"] = pre + kl_key
    source.update(kl_units=units, kl_per_token=None, gold=pre + gold_key, rows=len(used), entries=len(log.records))
    source["note"] = log.note
    source["algo"] = algo or log.extra.get("algo") or (trainer.algo if trainer else None)
    source["seed"] = log.extra.get("seed")
    source["seed_from"] = log.extra.get("seed_from") if source["seed"] is not None else None
    factor = _lengths(log, used, units, kl_key, keys, trainer, kl_per_token)
    rows = [{k: v for k, v in log.records[i].items() if _scalar(v)} for i in used]
    df = pd.DataFrame(rows)
    df = df.drop(columns=[c for c in (kl_key, gold_key) if c in df.columns])
    logged = list(kl)
    if factor is not None:
        df["kl_per_token"] = logged
        kl = [k * f for k, f in zip(kl, factor)]
        source["kl_per_token"] = kl_per_token
    per_token = logged if units == "per-token" or factor is not None else None
    source["clipped"] = clip_kl(log.where, [log.labels[i] for i in used], kl, per_token)
    df["kl"], df["gold"] = kl, gold
    proxy = next((p for p in (trainer.proxy if trainer else ()) if _resolve(p, keys) not in (None, gold_key)), None)
    if proxy is not None and "proxy" not in df.columns:
        df["proxy"] = pd.to_numeric(df.get(_resolve(proxy, keys)), errors="coerce")
        source["proxy"] = pre + _resolve(proxy, keys)
    spread = _resolve(gold_key[: -len("/mean")] + "/std", keys) if gold_key.endswith("/mean") else None
    if spread is not None and "gold_sd" not in df.columns:  # the per-step spread of the gold over completions
        df["gold_sd"] = pd.to_numeric(df.pop(spread) if spread in df.columns else None, errors="coerce")
        source["gold_sd"] = pre + spread
    step = next((k for k in STEP_KEYS if k in df.columns), None)
    if step not in (None, "step") and "step" not in df.columns:
        df["step"] = df.pop(step)
    if "method" not in df.columns:
        df["method"] = "rl"
    if "algo" not in df.columns:
        df["algo"] = source["algo"] or "rl"
    if "run" not in df.columns and log.run is not None:
        df["run"] = str(log.run)
    return df, source


def _scalar(v) -> bool:
    return v is None or isinstance(v, (int, float, str))


def _lengths(log, used, units, kl_key, keys, trainer, kl_per_token) -> list[float] | None:
    """The factor that makes each used row's KL per sequence; None to take it as logged."""
    if kl_per_token is None:
        if units == "per-token":
            length = next((k for k in trainer.length if _resolve(k, keys)), "LENGTH_COL")
            raise UsageError(
                f"{log.where}: '{kl_key}' ({trainer.name}) is a per-token KL (nats/token) and the laws need the KL"
                f" of the whole response: pass --kl-per-token {length} (per-sequence KL ~ kl x mean completion"
                " length, approximate), or --kl-per-token 1 to fit the per-token KL as logged"
            )
        return None
    if units == "per-sequence":
        return None
    if isinstance(kl_per_token, float):
        return [kl_per_token] * len(used)
    length = _resolve(kl_per_token, keys)
    if length is None:
        if units == "unknown":
            return None  # a log of unknown units without the length key is left as logged
        raise UsageError(
            f"{log.where}: --kl-per-token: no length key '{kl_per_token}'"
            f"{close_names(kl_per_token, keys, 'length')} (keys found: {all_keys(keys)})"
        )
    out = []
    for i in used:
        rec = log.records[i]
        if length not in rec:
            raise UsageError(f"{log.where}: {log.labels[i]}: has '{kl_key}' but no '{length}' to convert it with")
        value = _number(log, i, length, rec[length])
        if value <= 0:
            raise UsageError(f"{log.where}: {log.labels[i]}: '{length}' is {show(value, 30)}, not a positive length")
        out.append(value)
    return out


def describe(source: dict) -> str:
    """One clause for the stderr line: which KL (units, conversion) and which gold came from an input."""
    trainer = f"{source['trainer']}, " if source.get("trainer") else ""
    units = source["kl_units"]
    text = f"kl from '{source['kl']}' ({trainer}{units if units != 'unknown' else 'units unknown'})"
    conv = source.get("kl_per_token")
    if conv == 1.0:
        text += " fitted per token as logged (--kl-per-token 1: not comparable with per-sequence KLs)"
    elif conv is not None:
        text += f" x {conv:g}" if isinstance(conv, float) else f" x '{conv}'"
        text += " = per-sequence KL (approximate)"
    elif units == "unknown":
        text += " taken as the KL of the whole response"
    text += f", gold from '{source['gold']}'"
    if source.get("gold_sd"):
        text += f" (spread '{source['gold_sd']}')"
    if source.get("proxy"):
        text += f", proxy from '{source['proxy']}'"
    note = f", {source['note']}" if source.get("note") else ""
    run = source.get("run") if source.get("format") in ("wandb", "tensorboard") else None
    run = f" run {run}" if run and run not in source["input"] else ""
    algo = source.get("algo")
    text += f", algo {algo}" if algo else ", algo not recorded (name it with --algo)"
    if source.get("seed") is not None:
        text += f", seed {source['seed']} (from {source.get('seed_from') or 'the run'})"
    return f"{text} ({source['input']}{run}: {source['rows']} of {source['entries']} entries{note})"


def clipped_line(sources: list[dict]) -> str | None:
    """One line: every KL clipped to 0 (how many, in which run, at which entries, the logged values)."""
    parts = [
        f"{s.get('run') or s['input']}: "
        + ", ".join(f"{label} {value:.3g}" for label, value in s["clipped"][:8])
        + (f", ... ({len(s['clipped'])} in all)" if len(s["clipped"]) > 8 else "")
        for s in sources
        if s.get("clipped")
    ]
    if not parts:
        return None
    n = sum(len(s.get("clipped") or ()) for s in sources)
    return (
        f"{n} KL value(s) slightly below 0 (estimation noise: within 0.05 nats per token or 5% of the run's"
        f" largest KL) clipped to 0: " + "; ".join(parts)
    )
