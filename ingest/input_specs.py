"""What `overopt fit` is told about each input: `FILE:bon` / `FILE:rl` (its method), `--kl-per-token` (its KL
units) and `--recentre` (its gold's zero).

- `parse_spec("runs.csv:bon")` -> (Path("runs.csv"), "bon"): an existing path is always taken whole, so a
  file whose name ends in ':rl' is still read; the method replaces the input's `method` column.
- `parse_kl_per_token`: a length column (tokens per response, e.g. TRL's `completions/mean_length`) or a
  positive number (a fixed response length; 1 fits a per-token KL as logged).
- `parse_recentre` / `recentre`: foreign gold is fitted as logged; `first` subtracts from each curve its
  first logged gold (smallest step, else smallest KL: the nearest a log comes to the initial policy),
  a number subtracts that value (e.g. the initial policy's mean gold, measured separately). Only `gold`
  moves (the laws are fitted to gold; R(0) = 0 assumes the initial policy scores 0).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UsageError, cut, show

METHODS = ("bon", "rl", "ppo", "dpo", "ipo")  # the methods with a default law (scaling.laws.DEFAULT_LAW)


def parse_spec(src) -> tuple[Path, str | None]:
    """(path, method or None) of one input argument `FILE[:METHOD]`."""
    text = str(src)
    path = Path(text)
    if path.exists() or path.is_symlink() or ":" not in text:
        return path, None
    stem, _, method = text.rpartition(":")
    if method in METHODS and stem:
        return Path(stem), method
    if "/" not in method and method.isidentifier():
        raise UsageError(
            f"no such file or directory: {cut(text, 200)} (an input's method after ':' is one of {', '.join(METHODS)})"
        )
    return path, None


def parse_kl_per_token(value):
    """None, a positive float (tokens per response) or a column name, from `--kl-per-token`."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        raise UsageError("--kl-per-token needs a length column (e.g. completions/mean_length) or a number")
    try:
        number = float(text)
    except ValueError:
        return text
    if not (math.isfinite(number) and 0 < number <= 1e7):
        raise UsageError(f"--kl-per-token: a fixed length must be a positive number of tokens, got {show(text)}")
    return number


def parse_recentre(value):
    """None, "first" or a finite float, from `--recentre`."""
    if value is None or value == "none":
        return None
    if value == "first":
        return "first"
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"--recentre must be first, none or a number, got {show(value)}") from None
    if not math.isfinite(number) or abs(number) > 1e12:
        raise UsageError(f"--recentre must be a finite number, got {show(value)}")
    return number


def convert_table(df: pd.DataFrame, kl_per_token, where: str) -> tuple[pd.DataFrame, dict | None]:
    """A points table whose KL is per token (the user says so with --kl-per-token) made per sequence; the
    table is unchanged (and None returned) when a length column is named that it does not have."""
    if kl_per_token is None or (isinstance(kl_per_token, str) and kl_per_token not in df.columns):
        return df, None
    kl = pd.to_numeric(df["kl"], errors="coerce")
    if isinstance(kl_per_token, float):
        length = pd.Series(kl_per_token, index=df.index)
    else:
        length = pd.to_numeric(df[kl_per_token], errors="coerce")
        bad = ~(np.isfinite(length.to_numpy(dtype=float, na_value=np.nan)) & (length > 0).to_numpy())
        if bad.any():
            raise UsageError(
                f"{where}: --kl-per-token column '{kl_per_token}' has {int(bad.sum())} values that are"
                " not positive numbers"
            )
    out = df.copy()
    out["kl_per_token"] = kl
    out["kl"] = kl * length
    source = {"input": where, "format": "table", "trainer": None, "kl": "kl", "kl_units": "per-token"}
    source.update(kl_per_token=kl_per_token, gold="gold", rows=len(df), entries=len(df), note="")
    return out, source


def recentre(df: pd.DataFrame, how, curve_cols: tuple = ()) -> pd.DataFrame:
    """`df` with its gold recentred (`how`: None, "first" or a number; see the module doc). curve_cols: the
    columns one curve is told apart by ("first": each curve's first point is its zero)."""
    if how is None:
        return df
    out = df.copy()
    gold = pd.to_numeric(out["gold"], errors="coerce")
    if how != "first":
        out["gold"] = gold - how
        return out
    keys = [c for c in curve_cols if c in out.columns]
    order = "step" if "step" in out.columns else "kl"
    at = pd.to_numeric(out[order], errors="coerce")
    frame = pd.DataFrame({"gold": gold, "at": at})
    groups = [out[k].astype(str) for k in keys] if keys else [pd.Series(0, index=out.index)]
    first = frame.groupby(groups, sort=False, dropna=False)["at"].transform("min")
    at_first = frame["at"].eq(first)
    base = frame["gold"].where(at_first).groupby(groups, sort=False, dropna=False).transform("mean")
    out["gold"] = gold - base
    return out


def add_input_arguments(parser) -> None:
    """The input flags `overopt fit` and `overopt figures` share (one definition): which columns or log keys
    are KL and gold, their units, the gold's zero, evaluation entries, the optimizer, pooling of runs."""
    add = parser.add_argument
    add(
        "--kl-col",
        default="kl",
        metavar="C",
        help="column holding KL in nats (default kl; in a trainer log: the trainer's KL key, e.g. TRL's kl or"
        " objective/kl)",
    )
    add(
        "--gold-col",
        default="gold",
        metavar="C",
        help="column holding the gold score (default gold; in a trainer log also rewards/gold/mean)",
    )
    add(
        "--kl-per-token",
        default=None,
        metavar="LENGTH",
        help="the KL is per token (TRL GRPO/RLOO, OpenRLHF): multiply it by this column of mean completion length"
        " (e.g. completions/mean_length; approximate) or by a fixed length; 1 fits the per-token KL as logged",
    )
    add(
        "--recentre",
        default=None,
        metavar="HOW",
        help="gold is fitted as logged; 'first' subtracts each curve's first logged gold, a number subtracts it",
    )
    add(
        "--eval",
        action="store_true",
        help="trainer logs: fit the evaluation entries (eval_kl and eval_rewards/gold/mean, in the trainer's"
        " units: TRL GRPO/RLOO per token) instead of the training ones",
    )
    add("--algo", default=None, metavar="NAME", help="the optimizer of every trainer log (grpo, rloo, ppo, ...)")
    add(
        "--pool-runs",
        default=None,
        choices=("seeds", "curve"),
        help="trainer runs are each their own curve; 'seeds': pool them as seeds of one config (a t interval"
        " over runs, seed from each run's recorded seed), 'curve': one curve (intervals over points)",
    )


def load_options(args) -> dict:
    """The keyword arguments of `ingest.load.load_points_with_sources` from `add_input_arguments`' flags."""
    algo = args.algo
    if algo is not None and not (algo.replace("_", "").replace("-", "").isalnum() and len(algo) <= 40):
        raise UsageError(f"--algo: a short name of letters and digits (grpo, rloo, ppo), got {show(algo, 50)}")
    return {
        "kl_col": args.kl_col,
        "gold_col": args.gold_col,
        "kl_per_token": parse_kl_per_token(args.kl_per_token),
        "recentre": parse_recentre(args.recentre),
        "evals": args.eval,
        "algo": algo.lower() if algo else None,
        "pool_runs": args.pool_runs,
    }
