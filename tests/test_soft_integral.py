"""The soft rule's integral on panels (bon/soft_integral.py) against independent references.

References: the earlier implementation (`_direct_soft_row` below: the same quadrature summed over every
distinct value, float64, as bon/selection.py had it before the panels), and enumeration of every n-tuple
of draws on pools small enough to enumerate but narrow enough that a panel is interpolated. Tolerances:
p within 1e-13 of the largest p (and 1e-12 relative where p is above 1e-9 of the largest), the selection's
KL and expected gold within 1e-12; the direct sum's own rounding is (n-1) 1e-16 relative in psi.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bon import soft_integral
from bon.selection import _pow, kl_exact, soft_probs
from bon.soft_integral import Panels, degree, soft_row


def _direct_soft_row(z, counts, pool_size, n, temperature, grad):
    """bon.selection._soft_row before the panels: the trapezoid sum on every distinct value."""
    lo, hi = -36.0 - np.log(n), 4.0 - z.min()
    step = 0.2
    n_grid = int(np.ceil((hi - lo) / step)) + 1
    dz = -z / temperature
    acc, dacc = np.zeros(len(z)), np.zeros(len(z))
    rows = max(1, (1 << 20) // len(z))
    for g0 in range(0, n_grid, rows):
        u = lo + step * np.arange(g0, min(n_grid, g0 + rows))
        v = u[:, None] + z[None, :]
        with np.errstate(over="ignore"):
            ev = np.exp(v)
        E = np.exp(-ev)
        K = np.exp(v - ev)
        phi = E @ counts / pool_size
        psi = _pow(phi, n - 1.0)
        acc += K.T @ psi
        if grad:
            dphi = -(K * dz) @ counts / pool_size
            with np.errstate(divide="ignore", invalid="ignore"):
                dpsi = np.where(phi > 0, (n - 1.0) * _pow(phi, n - 2.0) * dphi, 0.0) if n > 1 else 0 * phi
            dacc += ((K - np.exp(2.0 * v - ev)) * dz).T @ psi + K.T @ dpsi
        if n / pool_size * max(psi[-1], np.abs(dpsi[-1]) * temperature if grad else 0.0) < 1e-18:
            break
    p = n / pool_size * step * acc
    return p / (p @ counts), (n / pool_size * step * dacc if grad else None)


def _pool(size, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=size)
    s[:50] = s[50]  # a tie block: counts > 1
    vals, counts = np.unique(s, return_counts=True)
    return s, vals, counts.astype(np.float64)


@pytest.mark.parametrize("n", [2, 40, 20_000])
@pytest.mark.parametrize("T", [0.06, 0.5, 2.0])
def test_panels_match_the_direct_sum_on_20000_values(n, T):
    s, vals, counts = _pool(20_000)
    z = (vals - vals[-1]) / T
    panels = Panels(z, counts, degree(n))
    assert len(panels.interp) > 0.9 * len(z) and len(panels.nodes) < len(z) / 3  # the panels did the work
    ref, dref = _direct_soft_row(z, counts, len(s), n, T, True)
    p, dp = soft_row(z, counts, len(s), n, T, True)
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-13 * ref.max())
    big = ref > 1e-9 * ref.max()
    np.testing.assert_allclose(p[big], ref[big], rtol=1e-12)
    np.testing.assert_allclose(dp, dref, rtol=0, atol=1e-10 * np.abs(dref).max())
    gold = np.sin(3 * vals)  # any bounded function of the score
    kl = lambda q: float(np.sum(counts * q * np.log(q * len(s))))
    assert kl(p) == pytest.approx(kl(ref), abs=1e-12)
    assert p @ (counts * gold) == pytest.approx(ref @ (counts * gold), abs=1e-12)


def test_soft_probs_on_a_large_pool_match_the_direct_sum_per_entry():
    s, vals, counts = _pool(20_000, seed=1)
    T, n = 0.3, 64
    inv = np.searchsorted(vals, s)
    ref = _direct_soft_row((vals - vals[-1]) / T, counts, len(s), n, T, False)[0][inv]
    p = soft_probs(s[None], n, T)[0]
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-13 * ref.max())
    assert kl_exact(p[None])[0] == pytest.approx(kl_exact(ref[None])[0], abs=1e-12)


def _enumerate_soft(scores, n, T):
    N = len(scores)
    p = np.zeros(N)
    for tup in itertools.product(range(N), repeat=n):
        w = np.exp((scores[list(tup)] - scores.max()) / T)
        np.add.at(p, np.array(tup), w / w.sum())
    return p / N**n


@pytest.mark.parametrize("n", [2, 3])
def test_an_interpolated_panel_matches_enumeration(n):
    """12 scores within a quarter of T: one panel, interpolated from 8 points (error bound 1e-9)."""
    rng = np.random.default_rng(2)
    T = 1.0
    scores = np.sort(np.concatenate([0.2 * rng.random(12), [-3.0, 1.0]]))
    vals, counts = np.unique(scores, return_counts=True)
    z = (vals - vals[-1]) / T
    m = 8
    assert len(Panels(z, counts.astype(float), m).interp) == 12
    p = soft_row(z, counts.astype(float), len(scores), n, T, False, m=m)[0]
    np.testing.assert_allclose(p, _enumerate_soft(scores, n, T), atol=1e-9)
    bound = max(soft_integral.C_P, soft_integral.C_Q * (n - 1)) * soft_integral.RHO ** -float(m)
    assert bound < 1e-9


def test_degree_meets_the_stated_bound():
    for n in (1, 2, 10, 1e3, 1e6, 1e9):
        m = degree(n)
        rho = soft_integral.RHO
        assert max(soft_integral.C_P, soft_integral.C_Q * max(n - 1, 1)) * rho**-m < soft_integral.BOUND
        assert max(soft_integral.C_P, soft_integral.C_Q * max(n - 1, 1)) * rho ** -(m - 1) >= soft_integral.BOUND


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-18, reason="long double is no wider than float64 here")
def test_large_n_against_an_80_bit_direct_sum():
    """n = N = 20,000: psi = phi^(n-1) multiplies phi's rounding by n - 1. Against the direct sum in long double
    (x86's 80 bits), the panels' sum (1 - phi kept apart) is within 1e-15 of the largest p; the earlier float64
    sum was 7e-14 off."""
    s, vals, counts = _pool(20_000, seed=1)
    n, T = len(s), 0.06
    z = (vals - vals[-1]) / T
    zl, cl = z.astype(np.longdouble), counts.astype(np.longdouble)
    lo = -36.0 - np.log(n)
    acc = np.zeros(len(z), dtype=np.longdouble)
    for g in range(int(np.ceil((4.0 - z.min() - lo) / 0.2)) + 1):
        v = np.longdouble(lo) + np.longdouble(0.2) * g + zl
        ev = np.exp(v)
        psi = ((np.exp(-ev) * cl).sum() / len(s)) ** np.longdouble(n - 1)
        acc += np.exp(v - ev) * psi
        if psi < 1e-18:
            break
    ref = (acc / (acc * cl).sum()).astype(np.float64)
    p = soft_row(z, counts, len(s), n, T, False)[0]
    assert np.abs(p - ref).max() < 1e-15 * ref.max()
