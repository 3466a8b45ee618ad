"""Selection rules on a pool: the exact probability that each pool entry is selected.

Setting. For each of P prompts a pool of N responses sampled from the initial policy carries a
ranking score s (a proxy RM, or an ensemble objective: the caller passes the combined score, e.g.
`proxy_rm.ensemble`'s mean, min, median or uncertainty-weighted array, as `proxy`) and a gold
score g. The base policy is the pool's empirical distribution: mass 1/N on each entry. A rule draws
n entries i.i.d. from it (with replacement, as `bon.estimator.bon_kl_estimate` assumes) and keeps
one. Every function here returns, per prompt, the probability p_i that entry i is kept
(float64 [P, N], rows summing to 1), so for any rule

    kl_exact = sum_i p_i log(p_i N)      (KL of the selection against the empirical base, nats)
    gold     = sum_i p_i g_i             (expected gold, exact: no Monte Carlo)

With replacement vs without. For max, sum_i p_i g_i is the plug-in value of best-of-n on the
pool; `bon.estimator.expected_best_of_n` draws without replacement and is unbiased for the policy.
They agree while n << N (1024 Gaussian entries, 64 prompts: 0.002 apart up to n = 32, 0.01 at
n = 128) and part as n nears N, where the plug-in saturates on the pool's top entry (its KL tends
to log N). All rules here draw with replacement, so they compare on the same footing.

Tie blocks. Entries with equal score form a block G with F(G) = #{s <= s_G}/N and
F-(G) = #{s < s_G}/N. A rule that ranks by s treats members of a block alike (ties broken
uniformly at random), so each member gets the block's probability divided by its size.

Rules (parameter, its limits):
  max (n >= 1, real n allowed): best-of-n, pi(G) = F^n - F-^n; n = 1 is the base.
      d pi(G)/dn = F^n log F - F-^n log F- (0 log 0 = 0).
  poisson (mu >= 0): Best-of-Poisson (Khalaf et al. 2025), n = 1 + Poisson(mu):
      pi(G) = E[F^(1+K)] - E[F-^(1+K)] = F e^{-mu(1-F)} - F- e^{-mu(1-F-)};
      d pi(G)/dmu = -F(1-F) e^{-mu(1-F)} + F-(1-F-) e^{-mu(1-F-)}; mu = 0 is the base, mu -> inf max.
  soft (temperature T >= 0, n fixed): soft best-of-n (Verdun et al. 2025): keep one of the n draws
      with probability proportional to w = exp(s / T). By exchangeability of the draws,
          p_i = n/N * w_i * E[1 / (w_i + S)],   S = sum of n-1 i.i.d. draws of w from the pool,
      and 1/a = int_0^inf e^{-ta} dt with E[e^{-tS}] = phi(t)^(n-1), phi(t) = (1/N) sum_j e^{-t w_j}:
          p_i = n/N * int_0^inf w_i e^{-t w_i} phi(t)^(n-1) dt.
      This one-dimensional integral is computed on t = e^u with the trapezoid rule (h = 0.2), whose
      error on such smooth, doubly decaying integrands falls like e^{-c/h} (1e-15 against
      enumeration and a finer grid); the sum on every other point (step 2h) must agree to 1e-5,
      which bounds the error at h near its square. The grid ends where the remaining mass
      n/N phi^(n-1) (and its T-derivative) falls below 1e-18. The sums run over distinct scores, and a
      pool with many of them is interpolated panel by panel (`bon.soft_integral`, error bound there). With
      w normalised by the largest (z = (s - max s)/T), d/dT follows by differentiating under the
      integral with dz_j/dT = -z_j/T. T = 0 is max (also used where (n-1) e^{-gap/T} < 1e-16 for
      the smallest gap between distinct scores), T = inf is the base; n = 1 is the base.
  regularized (n, beta >= 0, ref_logprob required): regularized best-of-n (Jinnai et al. 2024,
      RBoN with the KL proximity): the argmax of s - beta * (-log pi_ref(y)) over the n draws, i.e.
      max on the modified score s + beta * ref_logprob; beta = 0 is max.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import xlogy

from bon.estimator import as_pool
from bon.soft_integral import soft_row
from core.errors import UsageError

RULES = ("max", "soft", "poisson", "regularized")
PARAM = {"max": "n", "soft": "temperature", "poisson": "mu", "regularized": "n"}

_LAST_DISTINCT: dict = {}  # the last soft row's distinct scores (`_distinct`)
_LAST_BLOCKS: dict = {}  # the last pool's tie blocks (`tie_blocks`)


def _while_equal(cache: dict, key: np.ndarray, compute):
    """compute()'s tuple of arrays, kept (read-only) while `key` stays equal to the last one: a root-finder, or a
    grid of temperatures, evaluates one pool at many parameters."""
    hit = cache.get("key")
    if hit is None or hit.shape != key.shape or not np.array_equal(hit, key):
        out, key = compute(), key.copy()
        for a in (*out, key):
            a.flags.writeable = False
        cache.update(key=key, out=out)
    return cache["out"]


def tie_blocks(scores):
    """Per entry: F (share of the pool scoring <= it), F- (share scoring < it), its block's size.

    Arguments: `scores` (P, N) or (N,). Returns: three float64 [P, N] arrays.
    One sort per row (vectorised over rows): in sorted order a block spans positions [start, end), so
    an entry's F- is start / N and F is end / N.
    """
    s = as_pool("scores", scores)
    return _while_equal(_LAST_BLOCKS, s, lambda: _tie_blocks(s))


def _tie_blocks(s: np.ndarray):
    n_prompts, pool_size = s.shape
    order = np.argsort(s, axis=1, kind="stable")
    srt = np.take_along_axis(s, order, axis=1)
    pos = np.broadcast_to(np.arange(pool_size), s.shape)
    first = np.ones(s.shape, dtype=bool)
    first[:, 1:] = srt[:, 1:] != srt[:, :-1]
    last = np.ones(s.shape, dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, pos, pool_size), axis=1), axis=1), axis=1) + 1
    below, upto = np.empty(s.shape), np.empty(s.shape)
    np.put_along_axis(below, order, start.astype(np.float64), axis=1)
    np.put_along_axis(upto, order, end.astype(np.float64), axis=1)
    return upto / pool_size, below / pool_size, upto - below


def _check_param(name: str, value, low: float, allow_inf: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a number, got {value!r}") from None
    if np.isnan(v) or v < low or (np.isinf(v) and not allow_inf):
        raise UsageError(f"{name} must be >= {low:g}{'' if allow_inf else ' and finite'}, got {value!r}")
    return v


def _pow(f: np.ndarray, n: float) -> np.ndarray:
    """f^n for f in [0, 1] (0^n = 0 for n > 0)."""
    with np.errstate(divide="ignore"):
        return np.exp(n * np.log(f))


def _xlog_pow(f: np.ndarray, n: float) -> np.ndarray:
    """f^n log f, 0 at f = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, _pow(f, n) * np.log(np.where(f > 0, f, 1.0)), 0.0)


def max_probs(proxy, n, *, grad: bool = False, blocks=None):
    """Best-of-n selection probabilities [P, N]; with grad, also d p / d n (n real >= 1).

    `blocks`: optional `tie_blocks(proxy)`, computed once by a caller that evaluates many n.
    """
    F, Fm, size = tie_blocks(proxy) if blocks is None else blocks
    n = _check_param("n", n, 1.0)
    with np.errstate(divide="ignore"):
        ratio = np.log(Fm / F)  # -inf for the lowest block
    p = _pow(F, n) * -np.expm1(n * ratio) / size  # F^n - F-^n without cancellation
    if not grad:
        return p
    return p, (_xlog_pow(F, n) - _xlog_pow(Fm, n)) / size


def poisson_probs(proxy, mu, *, grad: bool = False):
    """Best-of-Poisson selection probabilities [P, N] (n = 1 + Poisson(mu)); with grad, d p / d mu."""
    F, Fm, size = tie_blocks(proxy)
    mu = _check_param("mu", mu, 0.0)
    a, b = F * np.exp(-mu * (1.0 - F)), Fm * np.exp(-mu * (1.0 - Fm))
    p = (a - b) / size
    if not grad:
        return p
    return p, (-(1.0 - F) * a + (1.0 - Fm) * b) / size


def regularized_score(proxy, ref_logprob, beta) -> np.ndarray:
    """The score regularized best-of-n maximises: proxy - beta * (-ref_logprob), float64 [P, N]."""
    s = as_pool("proxy", proxy)
    if ref_logprob is None:
        raise UsageError("the regularized rule needs ref_logprob (the reference log-prob of each response)")
    lp = as_pool("ref_logprob", ref_logprob, s.shape)
    return s + _check_param("beta", beta, 0.0) * lp


def regularized_probs(proxy, ref_logprob, n, beta, *, grad: bool = False):
    """Regularized best-of-n selection probabilities [P, N] (max on `regularized_score`); grad: d/dn."""
    return max_probs(regularized_score(proxy, ref_logprob, beta), n, grad=grad)


def _distinct(row: np.ndarray):
    """np.unique(row) with its inverse and counts; the last row's kept, since a grid of temperatures sorts one
    pool again and again (a sort of 10^6 scores a temperature)."""
    return _while_equal(_LAST_DISTINCT, row, lambda: np.unique(row, return_inverse=True, return_counts=True))


def soft_probs(proxy, n, temperature, *, grad: bool = False):
    """Soft best-of-n selection probabilities [P, N]; with grad, also d p / d temperature.

    Arguments: `proxy` (P, N) ranking scores; `n` draws (>= 1); `temperature` in [0, inf]
    (0: best-of-n; inf: the base). See the module docstring for the integral and its accuracy.
    """
    s = as_pool("proxy", proxy)
    n = _check_param("n", n, 1.0)
    T = _check_param("temperature", temperature, 0.0, allow_inf=True)
    n_prompts, pool_size = s.shape
    p = np.empty(s.shape)
    dp = np.zeros(s.shape)
    for k in range(n_prompts):
        vals, inv, counts = _distinct(s[k])
        gap = np.diff(vals).min() if len(vals) > 1 else np.inf
        if n == 1 or len(vals) == 1 or np.isinf(T):
            p[k] = 1.0 / pool_size
        elif T == 0 or np.log(n - 1.0) - gap / T < np.log(1e-16):
            p[k] = max_probs(s[k], n)[0]  # off by < 1e-16, and dp/dT by < 1e-16 gap / T^2
        else:
            pu, dpu = soft_row((vals - vals[-1]) / T, counts.astype(np.float64), pool_size, n, T, grad)
            p[k] = pu[inv]
            if grad:
                dp[k] = dpu[inv]
    return (p, dp) if grad else p


def selection_probs(rule: str, proxy, param, *, n=None, beta=None, ref_logprob=None, grad: bool = False):
    """Dispatch on `rule`: `param` is n (max, regularized), temperature (soft) or mu (poisson).

    Fixed knobs: `n` for soft, `beta` and `ref_logprob` for regularized.
    Returns: p float64 [P, N] (rows sum to 1), and d p / d param when `grad`.
    """
    if rule == "max":
        return max_probs(proxy, param, grad=grad)
    if rule == "poisson":
        return poisson_probs(proxy, param, grad=grad)
    if rule == "soft":
        if n is None:
            raise UsageError("the soft rule needs n (draws per selection)")
        return soft_probs(proxy, n, param, grad=grad)
    if rule == "regularized":
        if beta is None:
            raise UsageError("the regularized rule needs beta")
        return regularized_probs(proxy, ref_logprob, param, beta, grad=grad)
    raise UsageError(f"unknown selection rule {rule!r}; choose from {', '.join(RULES)}")


def kl_exact(probs) -> np.ndarray:
    """KL(selection || empirical pool) = sum_i p_i log(p_i N) in nats over the last axis (>= 0)."""
    p = np.asarray(probs, dtype=np.float64)
    return np.maximum(xlogy(p, p * p.shape[-1]).sum(axis=-1), 0.0)


def expected(probs, values) -> np.ndarray:
    """Expectation of `values` (P, N) under the selection probabilities (P, N): float64 [P]."""
    p = as_pool("probs", probs)
    return np.einsum("pi,pi->p", p, as_pool("values", values, p.shape))


def _mean_se(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[0] < 2:
        return x.mean(axis=0), np.full(x.shape[1:], np.nan)
    return x.mean(axis=0), x.std(axis=0, ddof=1) / np.sqrt(x.shape[0])


@dataclass(frozen=True)
class RuleCurve:
    """One rule over a grid of its parameter: means over prompts, their SEs, and per-prompt values.

    Fields: `rule`; `param` its name ("n", "temperature", "mu"); `values` float[M]; `kl_exact`,
    `kl_exact_se`, `gold`, `gold_se`, `proxy`, `proxy_se`: float[M]; `extra`/`extra_se`: name ->
    float[M]; `per_prompt`: "kl_exact", "gold", "proxy" and each extra -> float[P, M]; `n_prompts`,
    `pool_size`. Gold and KL are exact given the pool; the SEs are over prompts.
    """

    rule: str
    param: str
    values: np.ndarray
    kl_exact: np.ndarray
    kl_exact_se: np.ndarray
    gold: np.ndarray
    gold_se: np.ndarray
    proxy: np.ndarray
    proxy_se: np.ndarray
    n_prompts: int
    pool_size: int
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    extra_se: dict[str, np.ndarray] = field(default_factory=dict)
    per_prompt: dict[str, np.ndarray] = field(default_factory=dict)


def rule_curve(rule: str, proxy, gold, values, *, n=None, beta=None, ref_logprob=None, extra=None) -> RuleCurve:
    """kl_exact, gold, proxy (and extras) of `rule` at each parameter value in `values`.

    Arguments: `proxy`, `gold` (P, N); `values` the rule's parameter grid (see `selection_probs`);
    `n`, `beta`, `ref_logprob` the rule's fixed knobs; `extra` name -> (P, N) arrays (gold
    components) averaged the same way. `proxy` is the ranking score (an ensemble objective allowed).
    """
    s = as_pool("proxy", proxy)
    g = as_pool("gold", gold, s.shape)
    extra = {k: as_pool(f"extra[{k!r}]", v, s.shape) for k, v in (extra or {}).items()}
    if {"kl_exact", "gold", "proxy"} & set(extra):
        raise UsageError("extra may not use the names 'kl_exact', 'gold' or 'proxy'")
    values = np.atleast_1d(np.asarray(values, dtype=np.float64))
    arrays = {"gold": g, "proxy": s, **extra}
    pp = {k: np.empty((s.shape[0], len(values))) for k in ["kl_exact", *arrays]}
    for j, v in enumerate(values):
        p = selection_probs(rule, s, v, n=n, beta=beta, ref_logprob=ref_logprob)
        pp["kl_exact"][:, j] = kl_exact(p)
        for k, a in arrays.items():
            pp[k][:, j] = np.einsum("pi,pi->p", p, a)
    st = {k: _mean_se(v) for k, v in pp.items()}
    return RuleCurve(
        rule=rule,
        param=PARAM[rule],
        values=values,
        kl_exact=st["kl_exact"][0],
        kl_exact_se=st["kl_exact"][1],
        gold=st["gold"][0],
        gold_se=st["gold"][1],
        proxy=st["proxy"][0],
        proxy_se=st["proxy"][1],
        n_prompts=s.shape[0],
        pool_size=s.shape[1],
        extra={k: st[k][0] for k in extra},
        extra_se={k: st[k][1] for k in extra},
        per_prompt=pp,
    )
