"""The soft best-of-n integral on one pool's distinct scores (`bon.selection`'s soft rule).

For distinct normalised scores z_j = (s_j - max s)/T <= 0 with multiplicities c_j in a pool of N,
on the trapezoid grid u_g = lo + h g (t = e^u; `bon.selection`'s docstring has the derivation):

    p(z)      = n/N h sum_g K(u_g + z) psi_g,         K(x) = exp(x - e^x)
    psi_g     = phi_g^(n-1),  phi_g = 1/N sum_j c_j E(u_g + z_j),  E(x) = exp(-e^x),
    log phi_g = log1p(-q_g) while q_g = 1 - phi_g = 1/N sum_j c_j Q(u_g + z_j) < 1/2, Q(x) = -expm1(-e^x)
                (psi's relative error is (n-1) times q's absolute one: q is summed apart, not 1 - phi)

Computed on every distinct value, this costs (grid points G) x (distinct values D) exponentials:
10^6 distinct scores and G of 300 to 1100 a temperature took 36 s for six temperatures. Both sums
are smooth in z, so the values are cut into panels of width 1/4 in z, and a panel holding more than
m values is replaced by its m Chebyshev points: phi and q take the panel's values through the weights
W_i = sum_j c_j L_i(z_j) (L_i the Lagrange basis on the points; sum_i L_i = 1, so sum_i W_i = sum_j c_j),
and p at each value is interpolated from p at the points. A panel of m values or fewer is computed
on its values, as they are (small pools are never interpolated).

Error of a panel's interpolation. K, E and Q are entire; in the strip |Im x| <= pi/3, Re e^x >= e^(Re x)/2,
so |E| <= 1, |Q| <= 2 and |K(x)| <= 2 K(Re x - log 2) <= 2/e. On the Bernstein ellipse with semi-minor
axis b = pi/3 around a panel of half-width l = 1/8 (rho = b/l + sqrt((b/l)^2 + 1) = 16.8, semi-major axis
a = sqrt(b^2 + l^2)) the degree-(m-1) Chebyshev interpolant is off by at most 4 M rho^-m / (rho - 1)
(Trefethen, Approximation Theory and Approximation Practice, Thm 8.2), M the bound on the ellipse:
- phi and q (M <= 2): an absolute error under 0.51 rho^-m per unit of weight, which psi turns into a
  relative error (n-1) times as large where phi is near 1;
- p: M <= 2 p(Re z - log 2) <= 2 e^(a + l - log 2) p(z_j) for z_j in the panel (p rises at most like e^z),
  a relative error under 0.82 rho^-m.
`degree(n)` takes the smallest m with both under 1e-16 (14 points for n = 10, 18 for n = 10^6). Where
phi is small (far right on the grid) the bound on psi is absolute, not relative: p of the lowest
scores (p under 1e-12 of the largest) may differ from the direct sum in the 12th digit. d p / dT is
interpolated the same way (its sums are entire too; no bound stated, tested). Tested against the earlier
direct sum on 20,000 distinct values, an 80-bit long-double direct sum at n = 20,000, and enumeration
(tests/test_soft_integral.py).
"""

from __future__ import annotations

import numpy as np

from core.errors import UsageError

STEP = 0.2  # trapezoid step in u = log t
TOL = 1e-5  # largest accepted |p_h - p_2h|: the error at h is about its square
MAX_GRID = 60_000  # grid points: the u range is about (max s - min s) / T
CHUNK_ELEMS = 1 << 20
PANEL = 0.25  # panel width in z (narrower: fewer points a panel, more panels; 0.25 was fastest of 1, 0.5, 0.25)
STRIP = np.pi / 3  # the half-width in Im z of the strip where |K|, |Q|, |E| are bounded (module docstring)
RHO = 2 * STRIP / PANEL + np.hypot(2 * STRIP / PANEL, 1.0)  # the Bernstein ellipse's rho (16.8)
C_Q = 8.0 / (RHO - 1)  # q, phi: 4 M / (rho - 1) with M = 2
C_P = 8.0 * np.exp(np.hypot(STRIP, PANEL / 2) + PANEL / 2 - np.log(2)) / (RHO - 1)  # p: M <= 2 e^(a + l - log 2) p
BOUND = 1e-16  # target of each interpolation error bound (module docstring)


def degree(n: float) -> int:
    """Chebyshev points a panel: the smallest m with (n-1) C_Q rho^-m and C_P rho^-m under BOUND."""
    worst = max(C_P, C_Q * max(n - 1.0, 1.0))
    return int(np.ceil(np.log(worst / BOUND) / np.log(RHO)))


def _chebyshev(m: int) -> np.ndarray:
    """The m Chebyshev points of the first kind on [-1, 1] (none for m = 0)."""
    return np.cos((2 * np.arange(m) + 1) * np.pi / (2 * m)) if m else np.zeros(0)


def _lagrange(t: np.ndarray, m: int) -> np.ndarray:
    """[len(t), m] Lagrange basis on the m Chebyshev points of the first kind at t in [-1, 1]
    (barycentric form; a t on a point gets that point's indicator)."""
    k = np.arange(m)
    x = _chebyshev(m)
    lam = (-1.0) ** k * np.sin((2 * k + 1) * np.pi / (2 * m))
    L = np.subtract.outer(t, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(lam, L, out=L)
        total = L.sum(axis=1)
        L /= total[:, None]
    hit = ~np.isfinite(total)  # rare: t on a point (lam / 0 is infinite, so is the sum)
    if hit.any():
        L[hit] = t[hit, None] == x[None, :]
    return L


class Panels:
    """The evaluation points of one row: each value of a small panel, m Chebyshev points of a large one.

    `nodes` float[M]; `weights` (c at a value, W at a point) and `zweights` (the same for c z) float[M];
    `at(f)` maps a function known at the nodes, float[M, k], to every distinct value, float[D, k].
    """

    def __init__(self, z: np.ndarray, counts: np.ndarray, m: int, chunk: int = 1 << 15):
        self.chunk = chunk
        panel = np.floor((z - z[0]) / PANEL).astype(np.int64)
        big = np.bincount(panel)[panel] > m
        self.direct = np.flatnonzero(~big)
        self.interp = np.flatnonzero(big)
        ids, self.which = np.unique(panel[big], return_inverse=True)  # big panels (ascending), each value's
        centre = z[0] + (ids + 0.5) * PANEL
        self.t = (z[big] - centre[self.which]) / (PANEL / 2)
        if not len(ids):  # no panel interpolated (m may then be any size: nothing is made of it)
            m = 0
        self.m, self.size = m, len(z)
        x = _chebyshev(m)
        cheb = (centre[:, None] + PANEL / 2 * x[None, :]).reshape(-1)
        W = np.zeros((len(ids), 2, m))
        cz = np.stack([counts[big], counts[big] * z[big]], axis=1)
        for lo, L in self._bases():
            for panel_id, a, b in self._runs(lo, len(L)):
                W[panel_id] += cz[lo + a : lo + b].T @ L[a:b]
        self.nodes = np.concatenate([z[self.direct], cheb])
        self.weights = np.concatenate([counts[self.direct], W[:, 0].reshape(-1)])
        self.zweights = np.concatenate([counts[self.direct] * z[self.direct], W[:, 1].reshape(-1)])

    def _bases(self):
        for lo in range(0, len(self.t), self.chunk):
            yield lo, _lagrange(self.t[lo : lo + self.chunk], self.m)

    def _runs(self, lo: int, size: int):
        """(panel, start, end) of each panel's rows within the chunk [lo, lo + size): rows ascend by panel."""
        rows = self.which[lo : lo + size]
        cut = np.flatnonzero(rows[1:] != rows[:-1]) + 1
        starts, ends = np.r_[0, cut], np.r_[cut, size]
        return zip(rows[starts].tolist(), starts.tolist(), ends.tolist())

    def at(self, f: np.ndarray) -> np.ndarray:
        nd = len(self.direct)
        out = np.empty((self.size, f.shape[1]))
        out[self.direct] = f[:nd]
        if not self.m:
            return out
        cheb = f[nd:].reshape(-1, self.m, f.shape[1])
        for lo, L in self._bases():
            for panel_id, a, b in self._runs(lo, len(L)):  # one product a panel, no gathered copy
                out[self.interp[lo + a : lo + b]] = L[a:b] @ cheb[panel_id]
        return out


def soft_row(z, counts, pool_size, n, temperature, grad, m=None):
    """p (and dp/dT) per distinct value z = (s - max s)/T <= 0, sorted ascending, with multiplicities
    `counts` (float); `m` the Chebyshev points a panel (default `degree(n)`). p sums to 1 over the pool."""
    lo, hi = -36.0 - np.log(n), 4.0 - z.min()  # beyond: under e^-36 / N and e^(4 - e^4) of p
    n_grid = int(np.ceil((hi - lo) / STEP)) + 1
    if n_grid > MAX_GRID:
        raise UsageError(
            f"temperature {temperature:g} is too small for the exact soft rule on this pool "
            f"((max - min score) / T = {-z.min():.0f}); use the max rule or a larger temperature"
        )
    panels = Panels(z, counts, degree(n) if m is None else m)
    x = panels.nodes
    dz = -x / temperature
    # per node: sum_g K psi (the whole grid), the same on every other point, and d/dT's two sums
    acc, acc2, dacc1, dacc2 = (np.zeros(len(x)) for _ in range(4))
    rows = max(1, CHUNK_ELEMS // len(x))
    for g0 in range(0, n_grid, rows):
        u = lo + STEP * np.arange(g0, min(n_grid, g0 + rows))
        v = u[:, None] + x[None, :]
        with np.errstate(over="ignore"):
            ev = np.exp(v)  # t w_j; inf far right, where Q is 1 and K, ev K are 0
        K = np.exp(v - ev)  # w_i t e^{-t w_i} at t = e^u (the dt = t du factor included)
        q = np.clip(-np.expm1(-ev) @ panels.weights / pool_size, 0.0, 1.0)
        phi = np.clip(np.exp(-ev) @ panels.weights / pool_size, 0.0, 1.0)
        with np.errstate(divide="ignore"):
            logphi = np.where(q < 0.5, np.log1p(-q), np.log(phi))  # each where it keeps its digits
        psi = np.exp((n - 1.0) * logphi)
        acc += K.T @ psi
        even = (g0 + np.arange(len(u))) % 2 == 0
        acc2 += K[even].T @ psi[even]
        if grad:
            dphi = K @ panels.zweights / (pool_size * temperature)  # -(1/N) sum_j c_j K (-z_j / T)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                dpsi = np.where(q < 1, (n - 1.0) * np.exp((n - 2.0) * logphi) * dphi, 0.0) if n > 1 else 0 * q
            dacc1 += (K - np.exp(2.0 * v - ev)).T @ psi
            dacc2 += K.T @ dpsi
        # psi falls with u: stop once what is left (at most n/N psi, integral of K = 1) is negligible
        if n / pool_size * max(psi[-1], np.abs(dpsi[-1]) * temperature if grad else 0.0) < 1e-18:
            break
    sums = np.stack([acc, acc2] + ([dacc1 * dz, dacc2] if grad else []), axis=1)
    sums = panels.at(sums)
    p = n / pool_size * STEP * sums[:, 0]
    err = np.max(np.abs(p - n / pool_size * 2 * STEP * sums[:, 1]))
    if err > TOL:  # pragma: no cover - the integrand is smooth; kept as a guard
        raise ValueError(f"soft-rule quadrature error estimate {err:.2e} exceeds {TOL:g}")
    total = p @ counts
    return p / total, (n / pool_size * STEP * (sums[:, 2] + sums[:, 3]) if grad else None)
