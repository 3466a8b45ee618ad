"""Prompt-independent edits of responses (the global-move probe's moves), vectorised over a batch.

A batch is `tokens int[B, P+T]` (prompt ++ response, `core.tokens` layout) and `mask bool[B, T]`. An edit
returns `(tokens', mask', ok bool[B])`: the edited batch and which responses it applies to. Every edited
response is valid: the mask covers exactly its tokens, PAD follows, a response that ended with EOS still
ends with EOS, and it fits in T tokens. Where an edit cannot apply it leaves the response unchanged and
marks it not ok: an insertion that would overflow T (a response of T tokens, or one truncated at T without
EOS, has no room: such responses are *skipped*, never shortened to make room), a repeat of a response with
no previous token, a deletion from a response without the token it deletes. The probes average over the
ok responses only (and report how many there were).

`moves(world)` lists the moves of a world: insert each token that can appear in a response (FLATTER, each
bank marker, each symbol) at the start or just before EOS, and FLATTER and each marker 2 and 4 times
before EOS (and the step from 2 to 4); repeat the first or the last token; copy the
prompt's first symbol to the start; echo it over the first response symbol; delay EOS by one random symbol;
truncate the last token before EOS; drop the first token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.tokens import EOS, PAD
from gold_rm.world import FLATTER, SYMBOL0

SURFACE_COPIES = (2, 4)
"""further moves for FLATTER and each bank marker: that many copies inserted before EOS, and the step from the
first count to the second (their gold is capped: one copy can help it while more hurt it, and RL moves along
the token's logit, not by one copy; the step asks whether the proxy still rises beyond the cap)."""
DELAY_SEED = 0
"""seeds the symbol `delay EOS` inserts in each response (uniform over the world's symbols)."""


@dataclass(frozen=True)
class Move:
    """One global move: `name` (e.g. "insert <flatter> @end"), `kind` (insert, repeat, copy, echo, delay,
    truncate, drop) and `edit(tokens, mask, world) -> (tokens', mask', ok)`. With `base` (another move's
    name) the move is measured from that move's edited responses, not from the originals: a marginal step
    (e.g. 4 FLATTER tokens against 2), on the responses both apply to."""

    name: str
    kind: str
    edit: Callable
    base: str | None = None


def _split(tokens, mask, prompt_len):
    tokens = np.asarray(tokens)
    resp = tokens[:, prompt_len:].astype(np.int64)
    length = np.asarray(mask).sum(1)
    last = resp[np.arange(len(resp)), np.maximum(length - 1, 0)]
    has_eos = (length > 0) & (last == EOS)
    return resp, length, has_eos


def _join(tokens, resp, length, ok, prompt_len):
    """The batch with `resp` (length `length`) where ok, the original elsewhere."""
    T = resp.shape[1]
    new_mask = np.arange(T)[None, :] < length[:, None]
    resp = np.where(new_mask, resp, PAD)
    out = np.asarray(tokens).copy()
    out[:, prompt_len:] = np.where(ok[:, None], resp, out[:, prompt_len:]).astype(out.dtype)
    return out, new_mask


def insert(tokens, mask, prompt_len: int, pos, tok, ok):
    """Insert token `tok[b]` at response position `pos[b]` (0 <= pos <= length) where `ok`; responses
    whose new length would pass T are not ok (skipped). Returns (tokens', mask', ok)."""
    resp, length, _ = _split(tokens, mask, prompt_len)
    B, T = resp.shape
    pos, tok = np.broadcast_to(pos, (B,)), np.broadcast_to(tok, (B,))
    ok = np.asarray(ok, bool) & (length + 1 <= T) & (pos >= 0) & (pos <= length)
    j = np.arange(T)[None, :]
    shifted = np.concatenate([resp[:, :1], resp[:, :-1]], 1)  # shifted[j] = resp[j - 1]
    new = np.where(j < pos[:, None], resp, np.where(j == pos[:, None], tok[:, None], shifted))
    new_len = np.where(ok, length + 1, length)
    out, new_mask = _join(tokens, new, new_len, ok, prompt_len)
    return out, np.where(ok[:, None], new_mask, mask), ok


def delete(tokens, mask, prompt_len: int, pos, ok):
    """Delete the response token at `pos[b]` (0 <= pos < length) where `ok`. Returns (tokens', mask', ok)."""
    resp, length, _ = _split(tokens, mask, prompt_len)
    B, T = resp.shape
    pos = np.broadcast_to(pos, (B,))
    ok = np.asarray(ok, bool) & (pos >= 0) & (pos < length)
    j = np.arange(T)[None, :]
    after = np.concatenate([resp[:, 1:], np.full((B, 1), PAD)], 1)  # after[j] = resp[j + 1]
    new = np.where(j < pos[:, None], resp, after)
    new_len = np.where(ok, length - 1, length)
    out, new_mask = _join(tokens, new, new_len, ok, prompt_len)
    return out, np.where(ok[:, None], new_mask, mask), ok


def replace(tokens, mask, prompt_len: int, pos, tok, ok):
    """Set the response token at `pos[b]` to `tok[b]` where `ok` (pos < length). Returns (tokens', mask', ok)."""
    resp, length, _ = _split(tokens, mask, prompt_len)
    B = resp.shape[0]
    pos, tok = np.broadcast_to(pos, (B,)), np.broadcast_to(tok, (B,))
    ok = np.asarray(ok, bool) & (pos >= 0) & (pos < length)
    out = np.asarray(tokens).copy()
    rows = np.flatnonzero(ok)
    out[rows, prompt_len + pos[rows]] = tok[rows]
    return out, np.asarray(mask).copy(), ok


def _insert_at(where: str, token: int, copies: int = 1):
    def edit(tokens, mask, world):
        P = world.prompt_len
        t, m, ok = tokens, mask, np.ones(len(mask), bool)
        for _ in range(copies):  # every copy where the first went (a response without room for all: skipped)
            _, length, has_eos = _split(t, m, P)
            if where == "start":
                t, m, ok = insert(t, m, P, 0, token, ok & (length >= 1))
            else:
                t, m, ok = insert(t, m, P, length - 1, token, ok & has_eos)  # just before EOS
        return np.where(ok[:, None], t, tokens), np.where(ok[:, None], m, mask), ok

    return edit


def _repeat(where: str):
    def edit(tokens, mask, world):
        P = world.prompt_len
        resp, length, has_eos = _split(tokens, mask, P)
        rows = np.arange(len(resp))
        if where == "start":  # the first token again, after itself (not EOS)
            return insert(tokens, mask, P, 1, resp[:, 0], (length >= 1) & (resp[:, 0] != EOS))
        prev = resp[rows, np.maximum(length - 2, 0)]  # the token before EOS, again
        return insert(tokens, mask, P, length - 1, prev, has_eos & (length >= 2))

    return edit


def _copy_prompt(tokens, mask, world):
    P = world.prompt_len
    return insert(tokens, mask, P, 0, np.asarray(tokens)[:, 2], np.asarray(mask).sum(1) >= 1)


def _echo(tokens, mask, world):
    """The first response token, when it is a symbol other than s_1, becomes s_1."""
    P = world.prompt_len
    resp, _, _ = _split(tokens, mask, P)
    s1 = np.asarray(tokens)[:, 2].astype(np.int64)
    first = world.canon[np.clip(resp[:, 0], 0, world.vocab_size - 1)]  # a symbol's form is the symbol
    ok = (first >= SYMBOL0) & (first < SYMBOL0 + world.n_symbols) & (first != s1)
    return replace(tokens, mask, P, 0, s1, ok)


def _delay_eos(tokens, mask, world):
    P = world.prompt_len
    _, length, has_eos = _split(tokens, mask, P)
    sym = SYMBOL0 + np.random.default_rng(DELAY_SEED).integers(0, world.n_symbols, size=len(length))
    return insert(tokens, mask, P, length - 1, sym, has_eos)


def _truncate(tokens, mask, world):
    P = world.prompt_len
    _, length, has_eos = _split(tokens, mask, P)
    return delete(tokens, mask, P, length - 2, has_eos & (length >= 2))


def _drop_first(tokens, mask, world):
    P = world.prompt_len
    resp, length, _ = _split(tokens, mask, P)
    return delete(tokens, mask, P, 0, (length >= 1) & (resp[:, 0] != EOS))


def response_tokens(world) -> list[int]:
    """Every world token a response can hold besides EOS: FLATTER, the symbols, the bank markers."""
    return [FLATTER, *range(SYMBOL0, SYMBOL0 + world.n_symbols), *range(world.bank0, world.bank0 + world.bank_k)]


def moves(world) -> list[Move]:
    """The global moves of `world` (see the module docstring), in a fixed order."""
    out = []
    for v in response_tokens(world):
        for where in ("start", "end"):
            out.append(Move(f"insert {world.token_name(v)} @{where}", "insert", _insert_at(where, v)))
        if not SYMBOL0 <= v < SYMBOL0 + world.n_symbols:  # a capped surface token: pushed further along it
            name = world.token_name(v)
            for c in SURFACE_COPIES:
                out.append(Move(f"insert {name} x{c} @end", "insert", _insert_at("end", v, c)))
            lo, hi = SURFACE_COPIES
            out.append(
                Move(
                    f"insert {name} x{lo}->x{hi} @end", "insert", _insert_at("end", v, hi), f"insert {name} x{lo} @end"
                )
            )
    out += [
        Move("repeat first", "repeat", _repeat("start")),
        Move("repeat last", "repeat", _repeat("end")),
        Move("copy s_1 @start", "copy", _copy_prompt),
        Move("echo s_1 @0", "echo", _echo),
        Move("delay EOS", "delay", _delay_eos),
        Move("truncate", "truncate", _truncate),
        Move("drop first", "drop", _drop_first),
    ]
    return out
