"""Best-of-n points from a user's own samples (the Coste et al. / AlpacaFarm workflow): N responses per prompt
scored by a proxy RM (or an ensemble) and a gold RM, one row a response.

The samples table (CSV, Parquet or JSON lines; several files are concatenated):
- `prompt`: the prompt's id (any value; rows of one prompt form its pool, in file order);
- `proxy`, or `proxy_0` .. `proxy_k` for an ensemble of k + 1 members (ranked by `objective`);
- `gold`: the gold score, taken as given (not recentred unless asked);
- optional `response`: the response (text or an id; equal values within a prompt are one response,
  merged in the plug-in KL estimate: `bon.estimator.bon_kl_estimate`'s `sample_ids`);
- optional `ref_logprob`: the response's log-probability under the initial (reference) policy, for
  Beirami et al.'s estimator (`bon.kl_estimators.kl_beirami_pool`; without it, eps is the response's
  share of the pool);
- optional `rm_params`, `data_size`, `policy_params`, `seed`: each combination is its own set of pools and
  curve (like a study's proxies), carried into the points so the fits scale with them.
Every prompt of a curve must have the same pool size N (an unbalanced table is refused: the estimator's
standard errors are over prompts of one N); `pool_size` = M uses the first M samples of each prompt.
Points: every n <= N for N <= 256, else about two n an octave and N (`bon.pools.n_grid`); the unbiased
order-statistic estimator (`bon.estimator.expected_best_of_n`; ties are broken uniformly at random);
`kl` the analytic bound log n - (n-1)/n (`kl_bound` True); `kl_exact` best-of-n's KL against the pool's
empirical distribution, exact with respect to the pool (tie blocks handled; `bon.estimator.bon_kl_estimate`);
`kl_beirami` Beirami et al.'s estimator (in [0, kl]).

The other selection rules on the same pools (`rule_tables`: soft best-of-n, Best-of-Poisson, regularized
best-of-n) come from `bon.rule_points.rule_points` at `bon.rule_points.SelectionConfig`'s default grids
(temperatures and the regularized beta relative to the ranking score's spread on the pool; mu absolute):
`method` "bon", `rule`, `param`, `param_value`, `kl` = `kl_exact` (the selection's exact KL against the
pool's empirical distribution), gold and proxy exact on the pool, SEs over prompts; the regularized rule
needs `ref_logprob`. `bound_rows`: per prompt, where best-of-n's analytic KL bound overstates kl_exact.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bon.estimator import bon_points, bon_prompt_rows, expected_best_of_n
from bon.kl_estimators import bound_gap, kl_beirami_pool
from bon.pools import n_grid
from bon.rule_points import SelectionConfig, rule_points
from core.errors import UsageError, cut, show
from ingest.point_files import given_once, read_table
from scaling.points import MAX_RULE

SPLIT_COLS = ("rm_params", "data_size", "policy_params", "seed")
EVERY_N_UP_TO = 256
MIN_POOL = 4  # n = 1..4: three points with d > 0, the fewest a law is fitted to
MAX_ABS = 1e12
SE_ZERO = 1e-12  # a gold SE below this fraction of the largest |gold| is 0 up to rounding
_MEMBER = re.compile(r"proxy_(\d+)")


def read_samples(paths) -> pd.DataFrame:
    """The samples of every file, concatenated (each file read by `ingest.point_files.read_table`)."""
    frames, given = [], {}
    for src in paths:
        path = Path(src)
        given_once(given, src, path, None)
        if not path.exists():
            raise UsageError(f"no such file or directory: {path}")
        if path.is_dir():
            raise UsageError(f"{path} is a directory: give the samples table (.csv, .parquet or .jsonl)")
        frames.append(read_table(path, text=True))
    if not frames:
        raise UsageError("no samples table given")
    cols = [list(map(str, f.columns)) for f in frames]
    if any(set(c) != set(cols[0]) for c in cols[1:]):
        raise UsageError(f"the samples tables have different columns ({', '.join(cols[0])} vs others)")
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def proxy_columns(df: pd.DataFrame) -> list[str]:
    """['proxy'] or ['proxy_0', ..., 'proxy_k'] (an ensemble), checked."""
    cols = [str(c) for c in df.columns]
    members = sorted((int(m.group(1)), c) for c in cols if (m := _MEMBER.fullmatch(c)))
    if "proxy" in cols and members:
        raise UsageError("samples: both 'proxy' and 'proxy_0'.. columns: give one proxy or an ensemble")
    if "proxy" in cols:
        return ["proxy"]
    if not members:
        raise UsageError(f"samples: no 'proxy' (or proxy_0..proxy_k) column (columns found: {_cols(cols)})")
    if [i for i, _ in members] != list(range(len(members))):
        raise UsageError(f"samples: ensemble columns must be proxy_0..proxy_k without gaps, got {_cols(members)}")
    return [c for _, c in members]


def _cols(cols) -> str:
    return cut(", ".join(str(c[1] if isinstance(c, tuple) else c) for c in cols), 300)


def _numbers(df: pd.DataFrame, col: str) -> np.ndarray:
    raw = df[col]
    if pd.api.types.is_bool_dtype(raw) or (raw.dtype == object and raw.map(lambda v: isinstance(v, bool)).any()):
        raise UsageError(f"samples: column '{col}' holds true/false values, not numbers")
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    bad = ~np.isfinite(values) | (np.abs(np.nan_to_num(values)) > MAX_ABS)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UsageError(
            f"samples: column '{col}' has {int(bad.sum())} values that are not finite numbers within +-{MAX_ABS:g}"
            f" (first: row {row + 1}, {show(raw.iloc[row], 30)})"
        )
    return values


def check_samples(df: pd.DataFrame) -> list[str]:
    """The proxy columns; UsageError for a table that is not a samples table."""
    missing = [c for c in ("prompt", "gold") if c not in df.columns]
    if missing:
        names = " or ".join(f"'{c}'" for c in missing)
        raise UsageError(f"samples: no {names} column (columns found: {_cols(list(map(str, df.columns)))})")
    proxies = proxy_columns(df)
    empty = empty_prompts(df["prompt"])
    if empty.any():
        raise UsageError(f"samples: column 'prompt' has {int(empty.sum())} empty values")
    return proxies


def empty_prompts(prompts: pd.Series) -> np.ndarray:
    """bool[rows]: each row's prompt is missing (`_empty_prompt`). Vectorised for a column of strings or
    numbers (a Python loop over 10^6 rows took 1.5 s a pass); element-wise only for an object column that
    holds other values (a prompt may be a list or an array of token ids: Parquet's list columns)."""
    missing = prompts.isna().to_numpy(dtype=bool)
    if prompts.dtype != object and not pd.api.types.is_string_dtype(prompts.dtype):
        return missing  # numbers, booleans, categories: missing is the only empty
    if prompts.dtype != object or pd.api.types.infer_dtype(prompts, skipna=True) in ("string", "empty"):
        lengths = prompts.str.len().to_numpy(dtype=float, na_value=np.nan)
        return missing | (lengths == 0)
    return np.fromiter((_empty_prompt(v) for v in prompts), dtype=bool, count=len(prompts))


def _empty_prompt(value) -> bool:
    """A missing prompt: None/NaN, an empty string, or an empty list or array."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    if isinstance(value, str):
        return value == ""
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def prompt_key(value):
    """A prompt's key: its full value (1 and "1" differ, and true and 1); a list or array of token ids keyed
    by its contents, an object by its sorted items, each tagged with its kind (so [[]] and [{}], or {"a": 1}
    and [["a", 1]], stay two prompts); never its printed form, which cuts long lists."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return ("list", tuple(prompt_key(v) for v in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((str(k), prompt_key(v)) for k, v in value.items())))
    if isinstance(value, bool):  # True == 1 in Python: a boolean prompt is not the prompt 1
        return ("bool", value)
    return value


def prompt_codes(prompts: pd.Series) -> tuple[np.ndarray, list]:
    """(int code of each row's prompt, the prompts in first-seen order) by `prompt_key`."""
    plain = pd.api.types.infer_dtype(prompts, skipna=False) in ("string", "integer", "floating", "mixed-integer-float")
    keys = prompts.map(prompt_key) if prompts.dtype == object and not plain else prompts
    codes, uniques = pd.factorize(keys, use_na_sentinel=False)
    return codes, list(uniques)


def curves(df: pd.DataFrame, pool_size: int | None = None):
    """Yield (keys, proxy float[k, P, N], gold float[P, N], ids int[P, N] or None, ref_logprob float[P, N]
    or None) per curve."""
    proxies = check_samples(df)
    data = df.copy()
    for col in (*proxies, "gold"):
        data[col] = _numbers(df, col)
    has_id, has_lp = "response" in data.columns, "ref_logprob" in data.columns
    if has_id:  # an empty completion ("") is a response; a missing one (null) is not
        if data["response"].isna().any():
            raise UsageError("samples: column 'response' has missing (null) values")
        data["_id"] = prompt_codes(data["response"])[0]
    data["_prompt"], names = prompt_codes(data["prompt"])
    if has_lp:
        data["ref_logprob"] = _numbers(df, "ref_logprob")
        if (data["ref_logprob"] > 0).any():
            raise UsageError("samples: column 'ref_logprob' has values > 0 (a log-probability is <= 0)")
    keys = [c for c in SPLIT_COLS if c in data.columns]
    groups = data.groupby(keys, sort=True, dropna=False) if keys else [((), data)]
    for values, sub in groups:
        key = dict(zip(keys, values if isinstance(values, tuple) else (values,)))
        where = ", ".join(f"{k}={v}" for k, v in key.items()) or "samples"
        code = sub["_prompt"].to_numpy()
        order = np.unique(code, return_index=True)  # prompts in first-seen order, rows in file order
        prompts = order[0][np.argsort(order[1])]
        sizes = np.bincount(code)[prompts]
        small = names[prompts[int(sizes.argmin())]]
        n = int(sizes.min()) if pool_size is None else pool_size
        if pool_size is None and sizes.max() != sizes.min():
            raise UsageError(
                f"{where}: prompts have different pool sizes ({sizes.min()} to {sizes.max()} samples; prompt"
                f" {show(small, 30)} has {sizes.min()}): give every prompt the same number, or pass"
                " --pool-size M to use the first M samples of each"
            )
        if sizes.min() < n:
            raise UsageError(f"{where}: --pool-size {n}, but prompt {show(small, 30)} has {sizes.min()}")
        # one [P, n] index of rows: each prompt's first n rows in file order (a stable sort by prompt rank)
        rank = np.empty(int(code.max()) + 1, dtype=np.int64)
        rank[prompts] = np.arange(len(prompts))
        rows = np.argsort(rank[code], kind="stable").reshape(-1)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        take = rows[starts[:, None] + np.arange(n)[None, :]]
        cols = {c: sub[c].to_numpy()[take] for c in (*proxies, "gold", "_id", "ref_logprob") if c in sub.columns}
        proxy = np.stack([cols[c] for c in proxies])
        yield key, proxy, cols["gold"], cols.get("_id") if has_id else None, cols.get("ref_logprob")


def n_values(pool_size: int) -> np.ndarray:
    """Every n up to N for N <= 256, else `bon.pools.n_grid` (about two an octave, and N)."""
    return np.arange(1, pool_size + 1) if pool_size <= EVERY_N_UP_TO else n_grid(pool_size)


def ranking(proxy: np.ndarray, objective=None, uwo_lambda=1.0) -> tuple[str, np.ndarray]:
    """(objective name, ranking score float[P, N]) of proxy float[k, P, N]: member 0 for k = 1 ("single"),
    else the ensemble objective (default mean)."""
    k = proxy.shape[0]
    if k == 1 and objective not in (None, "single"):
        raise UsageError(f"--objective {objective} ranks an ensemble: give proxy_0..proxy_k columns")
    name = "single" if k == 1 else (objective or "mean")
    if k == 1:
        return name, proxy[0]
    from proxy_rm.ensemble import objective as ensemble_objective  # imports JAX: only for ensembles

    return name, np.asarray(ensemble_objective(name, proxy, lam=uwo_lambda), dtype=np.float64)


def bon_tables(df: pd.DataFrame, objective=None, uwo_lambda=1.0, pool_size=None, recentre=None):
    """(points, per-prompt rows) of every curve of the samples table `df`.

    objective: None (a single proxy: "single"; an ensemble: "mean") or one of mean, min, median, uwo (an
    ensemble only); recentre: None, "first" (subtract the pool's mean gold: best-of-1 scores 0) or a number.
    """
    points, prompts = [], []
    for key, proxy, gold, ids, logp in curves(df, pool_size):
        if gold.shape[1] < MIN_POOL:
            where = ", ".join(f"{k}={v}" for k, v in key.items()) or "samples"
            raise UsageError(
                f"{where}: pools of {gold.shape[1]} sample(s) a prompt give {gold.shape[1] - 1} point(s) with n > 1;"
                f" the law needs 3 (at least {MIN_POOL} samples a prompt)"
            )
        name, rank = ranking(proxy, objective, uwo_lambda)
        k = proxy.shape[0]
        if recentre is not None:
            gold = gold - (gold.mean() if recentre == "first" else recentre)
        if float(np.ptp(gold)) == 0.0:
            where = ", ".join(f"{k}={v}" for k, v in key.items()) or "samples"
            raise UsageError(f"{where}: every gold score is {gold.flat[0]:g}: no spread, no curve to fit")
        est = expected_best_of_n(rank, gold, n_values(gold.shape[1]), sample_ids=ids)
        const = {"objective": name, "ensemble_size": k, "rule": MAX_RULE, **key}
        pts = bon_points(est, **const)
        pts.insert(pts.columns.get_loc("kl") + 1, "kl_bound", True)
        beirami = kl_beirami_pool(rank, est.ns, ref_logprob=logp, sample_ids=ids)
        pts.insert(pts.columns.get_loc("kl_exact_se") + 1, "kl_beirami", beirami.mean(axis=0))
        rows = bon_prompt_rows(est, **const)
        if zero_se(pts, gold):  # pass/fail gold: every prompt agrees at some n; no 1/0 weights
            rows["gold_se"] = np.nan  # the curve is fitted unweighted, its intervals still over prompts
        points.append(pts)
        prompts.append(rows)
    return pd.concat(points, ignore_index=True), pd.concat(prompts, ignore_index=True)


def zero_se(points: pd.DataFrame, gold: np.ndarray) -> bool:
    """Set, in place, `gold_se` to NaN where it is 0 up to rounding (every prompt's estimate equal: pass/fail
    gold at some n, or prompts whose means agree, where the SE over prompts comes out as 3e-17, not 0), so a
    curve is never weighted by 1/0 or 1e33 (an R2 of -6e30); True when one was."""
    if "gold_se" not in points.columns:
        return False
    zero = points["gold_se"] <= SE_ZERO * float(np.max(np.abs(gold)))
    if zero.any():
        points["gold_se"] = points["gold_se"].where(~zero)
    return bool(zero.any())


def rule_tables(df: pd.DataFrame, rules, objective=None, uwo_lambda=1.0, pool_size=None, recentre=None, cfg=None):
    """Points of every rule in `rules` other than max, for every curve of the samples table; None if none."""
    cfg = cfg or SelectionConfig()
    frames = []
    for key, proxy, gold, _, logp in curves(df, pool_size):
        name, rank = ranking(proxy, objective, uwo_lambda)
        if recentre is not None:
            gold = gold - (gold.mean() if recentre == "first" else recentre)
        const = {"objective": name, "ensemble_size": proxy.shape[0], **key}
        for rule in rules:
            if rule != "max":
                frames.append(rule_points(rule, rank, gold, n_values(gold.shape[1]), cfg, ref_logprob=logp, **const))
                zero_se(frames[-1], gold)
    return pd.concat(frames, ignore_index=True) if frames else None


def bound_rows(df: pd.DataFrame, objective=None, uwo_lambda=1.0, pool_size=None, threshold: float = 0.1) -> list[dict]:
    """Per curve and prompt: where best-of-n's analytic KL bound overstates its exact KL on the pool by more
    than `threshold` nats at some n (`bon.kl_estimators.bound_gap`): low-entropy prompts, many ties."""
    rows = []
    for key, proxy, gold, _, _ in curves(df, pool_size):
        _, rank = ranking(proxy, objective, uwo_lambda)
        g = bound_gap(rank, n_values(gold.shape[1]), threshold=threshold)
        for p in range(rank.shape[0]):
            j = int(g.gap[p].argmax())
            rows.append(
                {
                    **key,
                    "prompt": p,
                    "loose": bool(g.any_loose[p]),
                    "max_gap": float(g.gap[p, j]),
                    "at_n": float(g.ns[j]),
                    "tie_gap": float(g.tie_gap[p, j]),
                    "tie_fraction": float(g.tie_fraction[p]),
                    "entropy": float(g.entropy[p]),
                }
            )
    return rows
