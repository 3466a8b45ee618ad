"""How the fitting writes values: JSON-safe numbers and intervals, and short size labels.

`json_num`, `json_value` and `json_ci` turn numpy scalars, NaN and infinities into plain JSON (None for
missing); `fmt_params` writes a parameter count or data size short (1234567 -> '1.23M').
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def json_num(x):
    """Python float, or None for missing / non-finite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def json_value(v):
    """A grouping value as plain JSON: numpy scalars to Python, NaN, infinities, NA and NaT to None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if v is pd.NA or v is pd.NaT:
        return None
    return v


def json_ci(ci):
    """An interval [lo, hi] as two floats, or None when it or either end is missing or non-finite."""
    if ci is None:
        return None
    lo, hi = json_num(ci[0]), json_num(ci[1])
    return None if lo is None or hi is None else [lo, hi]


def fmt_params(n: float) -> str:
    """1234567 -> '1.23M' (parameter counts and data sizes in legends and report lines)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    n = float(n)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.3g}"
