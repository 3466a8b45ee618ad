"""Edits of sampled responses: the learned gold's training data reaches beyond the initial policy's samples.

Each edit acts on a response's content (its tokens before EOS) and keeps the token layout of
ARCHITECTURE.md (a response ends at its first EOS; PAD after; a response of max_new tokens without EOS is
truncated):
  repetition    a content token duplicated in place (one more adjacent repeat)
  echo          content position i < k set to the prompt's symbol s_i (restating the question)
  truncation    the content cut at a random length (EOS kept)
  substitution  a content token replaced by a random symbol
  flattery      a FLATTER token inserted at a random position
"""

from __future__ import annotations

import numpy as np

from core.tokens import EOS, PAD
from gold_rm.world import FLATTER, SYMBOL0

EDITS = ("repetition", "echo", "truncation", "substitution", "flattery")


def edit_content(content: list, kind: str, prompt_syms, n_symbols: int, rng: np.random.Generator) -> list:
    """One edit `kind` (EDITS) of `content` (token ids before EOS); `prompt_syms` the prompt's k symbols."""
    c = list(content)
    if kind == "flattery":
        c.insert(int(rng.integers(0, len(c) + 1)), FLATTER)
    elif not c:  # the other edits need content: an empty response is left as it is
        return c
    elif kind == "repetition":
        i = int(rng.integers(0, len(c)))
        c.insert(i + 1, c[i])
    elif kind == "echo":
        i = int(rng.integers(0, min(len(c), len(prompt_syms))))
        c[i] = int(prompt_syms[i])
    elif kind == "truncation":
        c = c[: int(rng.integers(0, len(c)))]
    elif kind == "substitution":
        c[int(rng.integers(0, len(c)))] = SYMBOL0 + int(rng.integers(0, n_symbols))
    else:
        raise ValueError(f"unknown edit {kind!r}; choose from {EDITS}")
    return c


def perturb(tokens, mask, *, prompt_len: int, k: int, n_symbols: int, n_edits, rng: np.random.Generator):
    """Each response edited `n_edits[i]` times (edits drawn uniformly from EDITS).

    Arguments: tokens int[B, P+T], mask bool[B, T]; prompt_len P; k prompt symbols (at 2 .. 2+k); n_symbols;
    n_edits int[B] (0: unchanged); rng. Returns (tokens int32[B, P+T], mask bool[B, T]), new arrays.
    """
    tokens, mask = np.array(tokens, np.int32), np.array(mask, bool)
    T = mask.shape[1]
    for i in range(tokens.shape[0]):
        if n_edits[i] == 0:
            continue
        resp = tokens[i, prompt_len:][mask[i]].tolist()
        ended = bool(resp) and resp[-1] == EOS
        content = resp[:-1] if ended else resp
        for kind in rng.choice(EDITS, size=int(n_edits[i])):
            content = edit_content(content, str(kind), tokens[i, 2 : 2 + k], n_symbols, rng)
        new = (content + [EOS])[:T]  # an edit past max_new truncates the response (no EOS)
        tokens[i, prompt_len:] = PAD
        tokens[i, prompt_len : prompt_len + len(new)] = new
        mask[i] = np.arange(T) < len(new)
    return tokens, mask
