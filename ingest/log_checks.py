"""What a trainer log must satisfy before its rows become points, and what it says about its run.

- `eval_view`: the log's evaluation entries (`eval_kl`, `eval_rewards/gold/mean`, TensorBoard's `eval/kl`)
  with the prefix dropped, so the trainer's known keys and units apply to them (`--eval`).
- `check_steps`: the rows used must have strictly increasing steps; a step that repeats or goes backwards
  is two histories concatenated or a step logged twice, refused naming the entry (never averaged).
- `clip_kl`: a KL estimate slightly below 0 is noise (TRL's RLOO logs the k1 estimate, about -0.01 at the
  start): within 0.05 nats per token, or 5% of the run's largest KL, it is clipped to 0 and reported; a
  clearly negative KL is refused naming the entry and its value.
- `algo_of`: the optimizer that produced a run (grpo, rloo, ppo, ...): the user's `--algo`, else what the
  run records (TensorBoard `args`, the model card TRL writes, the directory's name), else the trainer's.
"""

from __future__ import annotations

import math
import re

from core.errors import UsageError, show

NEG_KL_PER_TOKEN = 0.05  # nats per token: a KL estimate this little below 0 is estimation noise
NEG_KL_FRACTION = 0.05  # ... or this fraction of the run's largest KL
EVAL_PREFIXES = ("eval_", "eval/")
ALGOS = ("grpo", "rloo", "ppo", "reinforce", "remax", "dpo", "online_dpo", "gspo", "dapo")
_ALGO_WORD = re.compile(r"(?<![a-z])(online_dpo|grpo|rloo|ppo|reinforce|remax|dpo|gspo|dapo)(?![a-z])", re.I)
_CARD = re.compile(r"trained with \[?(GRPO|RLOO|PPO|DPO|Online DPO|REINFORCE|RLOO|GSPO|DAPO)", re.I)


def eval_view(records: list[dict], labels: list[str]) -> tuple[list[dict], list[str]]:
    """(records, labels) of the evaluation entries, prefix dropped (step keys kept)."""
    out, kept = [], []
    for rec, label in zip(records, labels, strict=True):
        ev = {k[5:]: v for k, v in rec.items() if k.startswith(EVAL_PREFIXES)}
        if ev:
            ev.update({k: rec[k] for k in ("step", "global_step", "epoch") if k in rec and k not in ev})
            out.append(ev)
            kept.append(label)
    return out, kept


def check_steps(where: str, labels: list[str], steps: list) -> None:
    """UsageError at the first used row whose step is not above the one before it."""
    prev = None
    for label, step in zip(labels, steps, strict=True):
        if step is None or isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step):
            continue
        if prev is not None and step <= prev:
            how = "repeats" if step == prev else "goes backwards"
            raise UsageError(
                f"{where}: {label}: step {show(step, 20)} {how} after step {show(prev, 20)} (two histories"
                " concatenated, or a step logged twice): give one run's log, or split it into one file a run"
            )
        prev = step


def clip_kl(where: str, labels: list[str], kl: list[float], per_token: list[float] | None) -> list[tuple[str, float]]:
    """Clip KL estimates slightly below 0 in place; returns (label, logged value) of each clipped row.

    kl: the per-sequence (or as-logged) KL of each row; per_token: the logged per-token KL of each row where
    the log is per token (else None). A row is noise when its per-token KL is >= -0.05 or its KL >= -5% of
    the run's largest; any other negative KL raises UsageError naming the row."""
    top = max([k for k in kl if k > 0], default=0.0)
    clipped = []
    for i, value in enumerate(kl):
        if value >= 0:
            continue
        logged = per_token[i] if per_token is not None else value
        small = (per_token is not None and logged >= -NEG_KL_PER_TOKEN) or value >= -NEG_KL_FRACTION * top
        if not small:
            unit = " nats/token" if per_token is not None else ""
            raise UsageError(
                f"{where}: {labels[i]}: the KL is {show(logged, 20)}{unit}, clearly negative (beyond"
                f" -{NEG_KL_PER_TOKEN:g} nats per token and -{NEG_KL_FRACTION:.0%} of the run's largest KL,"
                f" {top:.4g}): a KL is >= 0; check the KL key (--kl-col) or the estimator the trainer logs"
            )
        clipped.append((labels[i], logged))
        kl[i] = 0.0
    return clipped


def algo_from_text(text: str) -> str | None:
    """The algorithm a model card (README.md) or a run's name names, lower case; None when none."""
    m = _CARD.search(text)
    if m:
        return m.group(1).lower().replace(" ", "_")
    m = _ALGO_WORD.search(text.replace("-", "_"))
    return m.group(1).lower() if m else None


def algo_from_args(args: dict) -> str | None:
    """The algorithm a trainer's arguments (HF TensorBoard `args` JSON) reveal: TRL's configs' own fields."""
    if not isinstance(args, dict):
        return None
    name = str(args.get("run_name") or "") + " " + str(args.get("output_dir") or "")
    by_name = algo_from_text(name)
    if by_name:
        return by_name
    if "rloo_k" in args or "kl_estimator" in args and "num_generations" not in args:
        return "rloo"
    return None


SEED_BOUND = 2**64  # a seed is an integer of magnitude below 2^64 (numpy's and torch's fit; HF's set_seed: < 2^32)


def seed_from_args(args: dict, where: str):
    """The seed a trainer's arguments record: an int, None when they record none (no `seed`, or null). A `seed`
    that is no seed (text, a fraction, true, an integer beyond +-2^64 such as a 5,000-digit one) is bad input
    naming `where` (the file), never taken as "no seed": pooled as seeds, the run would be keyed by its name."""
    if not isinstance(args, dict) or args.get("seed") is None:
        return None
    seed = args["seed"]
    if isinstance(seed, float) and seed.is_integer() and abs(seed) < 2**53:  # 42.0, as some exports write it
        seed = int(seed)
    if isinstance(seed, int) and not isinstance(seed, bool):
        if abs(seed) < SEED_BOUND:
            return seed
        small = seed.bit_length() < 14_000  # str() refuses more than 4,300 digits
        digits = len(str(abs(seed))) if small else f"about {math.floor(seed.bit_length() * math.log10(2)) + 1}"
        what = f"an integer of {digits} digits"
    else:
        what = show(seed, 40)
    raise UsageError(f"{where}: seed {what} is not a seed (an integer within +-2^64): correct it or remove it")
