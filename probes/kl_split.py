"""RL's KL split by the tokens it is spent on (issue 31, item 3): the part on the tokens the gold's task term
judges and the rest.

On samples y of the RL policy pi with reference pi_init, the k1 estimate of KL(pi || pi_init) of a response is
sum_t r_t with r_t = log pi(y_t | y_<t) - log pi_init(y_t | y_<t) over its response tokens (`rl.kl.sequence_kl`
with "k1"). Each response token falls in one class, as the gold reads it (`probes.tables.content_index`):
  task      a content symbol at content index < k: the positions the task term compares with the target;
  extra     a content symbol at content index >= k (length, repetition);
  flatter   FLATTER;  bank: a bank marker;  eos: EOS.
The KL of a class is the mean over responses of the sum of r_t over its tokens; the classes add up to the
sequence KL. "judged" is the task class, "rest" the others. Needs per-token log-probs of policy and
reference on the same samples: what `rl.ppo` evaluate computes inside its program but does not return.
With several forms per symbol (`WorldConfig.variants` > 1) a symbol token's r_t splits exactly into the choice of
symbol, log P(symbol) - log P_init(symbol) (the group log-probs: the sum over its forms), which stays in its class,
and the choice of form given the symbol, log pi(form | symbol) - log pi_init(form | symbol), which goes to the class
"form": KL the gold never pays for (it reads every form as the symbol). Without forms there is no "form" key.
"""

from __future__ import annotations

import numpy as np

from core.tokens import EOS
from gold_rm.world import FLATTER
from probes.tables import content_index

CLASSES = ("task", "extra", "flatter", "bank", "eos")


def token_classes(tokens, mask, world) -> dict:
    """Class name -> bool[B, T]: which response tokens belong to it (disjoint; together the mask)."""
    resp = np.asarray(tokens)[:, world.prompt_len :]
    mask = np.asarray(mask, bool)
    keep, idx = content_index(tokens, mask, world)
    marker = (resp >= world.bank0) & (resp < world.bank0 + world.bank_k)
    return {
        "task": keep & (idx < world.k),
        "extra": keep & (idx >= world.k),
        "flatter": mask & (resp == FLATTER),
        "bank": mask & marker,
        "eos": mask & (resp == EOS),
    }


def kl_split(logp, logp_ref, tokens, mask, world, logp_group=None, logp_ref_group=None) -> dict:
    """The k1 KL of each class (mean over responses, nats), "judged" (= task), "rest" and "total"; with the group
    log-probs of a world with forms, also "form" (the choice of form given the symbol; see the module docstring)."""
    mask = np.asarray(mask, bool)
    r = np.where(mask, np.asarray(logp, np.float64) - np.asarray(logp_ref, np.float64), 0.0)
    classes = token_classes(tokens, mask, world)
    r_class, extra = r, {}
    if logp_group is not None and world.cfg.variants > 1:
        r_sym = np.where(mask, np.asarray(logp_group, np.float64) - np.asarray(logp_ref_group, np.float64), 0.0)
        content = classes["task"] | classes["extra"]
        r_class = np.where(content, r_sym, r)
        extra = {"form": float(np.where(content, r - r_sym, 0.0).sum(1).mean())}
    out = {c: float(np.where(sel, r_class, 0.0).sum(1).mean()) for c, sel in classes.items()} | extra
    out["judged"] = out["task"]
    out["rest"] = sum(out[c] for c in (*CLASSES, *extra) if c != "task")
    out["total"] = float(r.sum(1).mean())
    return out
