"""The pairwise losses of direct alignment, as functions of the margin of implicit rewards of a pair.

With sequence log-probabilities (sums over the response tokens) of the policy (pi) and the frozen reference
(ref) on the preferred (w) and dispreferred (l) responses, the margin is
    h = (log pi(w) - log ref(w)) - (log pi(l) - log ref(l))
and the per-pair losses, for beta > 0:
  - DPO (Rafailov et al. 2023):  -log sigmoid(beta * h)
  - IPO (Azar et al. 2023):      (h - 1 / (2 beta))^2          (sequence sums, as in the IPO paper)
  - SLiC (Zhao et al. 2023):     max(0, 1 - beta * h)          (the hinge; TRL's loss_type "hinge")
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOSSES = ("dpo", "ipo", "slic")
__all__ = ["LOSSES", "dpo_loss", "ipo_loss", "margin", "pair_loss", "slic_loss"]


def margin(logp_w, ref_w, logp_l, ref_l):
    """h = (logp_w - ref_w) - (logp_l - ref_l), elementwise over pairs."""
    return (logp_w - ref_w) - (logp_l - ref_l)


def dpo_loss(h, beta):
    """-log sigmoid(beta h), computed stably."""
    return -jax.nn.log_sigmoid(beta * h)


def ipo_loss(h, beta):
    """(h - 1 / (2 beta))^2."""
    return jnp.square(h - 0.5 / beta)


def slic_loss(h, beta):
    """max(0, 1 - beta h)."""
    return jnp.maximum(1.0 - beta * h, 0.0)


def pair_loss(name: str, h, beta):
    """The per-pair loss `name` (one of LOSSES) of margins h."""
    return {"dpo": dpo_loss, "ipo": ipo_loss, "slic": slic_loss}[name](h, beta)
