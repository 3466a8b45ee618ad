"""The synthetic world: prompt-conditioned tasks with graded quality and a base corpus of mixed quality.

Vocabulary (after the special tokens of `core.tokens`): one FLATTER token, one token per task in
`ALL_TASKS` (always allocated, so token ids do not depend on which tasks are in use), then
`n_symbols` content symbols, then `bank_k` marker tokens (the bank of extremal features,
`gold_rm.bank`; none by default, so the default vocabulary and corpus are unchanged), then with
`variants = m > 1` the m - 1 further surface forms of each symbol (form v of symbol j is
`variant0 + (v - 1) * n_symbols + j`; none by default).
A prompt is `[BOS, TASK, s_1..s_k, SEP]`; the target response is the task applied to `s_1..s_k`,
then EOS:
  copy     s_1..s_k
  reverse  s_k..s_1
  sort     the symbols in ascending order
  map      perm(s_1)..perm(s_k), `perm` a fixed random permutation of the symbols (from the seed):
           a per-position interaction that a small reward model cannot represent.
The base corpus (what the initial policy is pretrained on) corrupts targets at a per-example rate,
changes their length, repeats symbols, echoes the prompt and inserts FLATTER (and bank marker) tokens, so that every
quality level, length and surface feature the gold rewards or penalises is present.
`global_exploits=False` (issue 31's world W1) removes the single-token surface features: the corpus then has
no FLATTER token (flatter_rate is not used) and no bank is allowed, and the gold judges FLATTER as a content
token that is never right (`gold_rm.gold`), so no one token carries a reward of its own anywhere.
`variants = m > 1` writes each response symbol of the corpus as one of its m forms, uniformly at random, and the
gold reads every form as its symbol (`canon`, applied before every term): which form is free to the gold and
carries log m nats of the reference policy's entropy per symbol. RL that collapses it spends KL the gold does not
pay for (the way RL spends KL on a real LM's stylistic choices), which best-of-n at a given n does not.
Everything here is numpy and deterministic for a seed / Generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import UsageError
from core.store import OMIT_DEFAULT
from core.tokens import BOS, EOS, N_SPECIAL, PAD, SEP
from gold_rm.bank import expand_rows, insert_markers, marker_counts, marker_rates, validate_world

ALL_TASKS = ("copy", "reverse", "sort", "map")
FLATTER = N_SPECIAL  # the flattery token: rewarded by the gold up to a cap, penalised beyond
TASK0 = FLATTER + 1  # token of ALL_TASKS[i] is TASK0 + i
SYMBOL0 = TASK0 + len(ALL_TASKS)  # token of content symbol j is SYMBOL0 + j

_PERM_STREAM, _BIGRAM_STREAM = 101, 102  # seed-sequence tags: independent streams from one world seed


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the world and the knobs of its base corpus."""

    seed: int = 0
    """seeds the `map` permutation and the corpus statistics the gold uses (bigram table)."""
    n_symbols: int = 12
    """number of content symbols."""
    k: int = 5
    """symbols per prompt (the target response has k symbols then EOS)."""
    max_new: int = 14
    """response budget T in tokens, EOS included (room for over-long, repetitive, flattering answers)."""
    tasks: tuple[str, ...] = ALL_TASKS
    """tasks in use, drawn uniformly per prompt (a subset of copy, reverse, sort, map)."""
    corrupt_a: float = 1.0
    """Beta(a, b) of the per-example corruption rate (1, 1: uniform, so quality spans perfect to random)."""
    corrupt_b: float = 1.0
    """see corrupt_a."""
    short_prob: float = 0.1
    """probability that a response is truncated to 0..k-1 symbols."""
    long_prob: float = 0.2
    """probability that 1..long_max random symbols are appended (makes length exploitable)."""
    long_max: int = 4
    """most symbols appended to an over-long response."""
    repeat_prob: float = 0.15
    """probability that one symbol is repeated 1..repeat_max extra times in place (stutter)."""
    repeat_max: int = 3
    """most extra copies of a stuttered symbol."""
    echo_prob: float = 0.1
    """probability that the first 1..k response symbols are replaced by the prompt's (echo)."""
    flatter_rate: float = 0.08
    """probability that a response carries at least one FLATTER token (DESIGN: about 8%)."""
    flatter_more: float = 0.35
    """given one FLATTER token, probability of each further one (geometric count; capped by max_new)."""
    global_exploits: bool = field(default=True, metadata=OMIT_DEFAULT)
    """False: no single-token surface features (W1, issue 31): the corpus carries no FLATTER token (its rate is 0
    whatever flatter_rate says), bank_k must be 0, and the gold has no flattery term (`gold_rm.gold`)."""
    bank_k: int = field(default=0, metadata=OMIT_DEFAULT)
    """number of bank marker tokens (extremal surface features, `gold_rm.bank`); 0: no bank (issue 22)."""
    bank_rate_max: float = field(default=0.3, metadata=OMIT_DEFAULT)
    """probability that a response carries marker 0 (the most frequent); rates are log-spaced down to ..."""
    bank_rate_min: float = field(default=0.03, metadata=OMIT_DEFAULT)
    """... this probability for marker bank_k - 1 (the rarest)."""
    bank_more: float = field(default=0.3, metadata=OMIT_DEFAULT)
    """given one copy of a marker, probability of each further copy (geometric; the budget cuts markers
    inserted after flattery, in a random order, so long responses show them a little less)."""
    variants: int = field(default=1, metadata=OMIT_DEFAULT)
    """surface forms per content symbol in responses: 1 (default) one; m > 1: corpus responses write each symbol as
    one of m tokens, uniformly, and the gold reads every form as the symbol (free to the gold: RL's KL sink)."""


class World:
    """Prompts, targets and the base corpus of one `WorldConfig`."""

    def __init__(self, cfg: WorldConfig = WorldConfig()):
        validate(cfg)
        self.cfg = cfg
        self.k = cfg.k
        self.n_symbols = cfg.n_symbols
        self.bank0 = SYMBOL0 + cfg.n_symbols
        """token id of bank marker 0 (marker i is bank0 + i)."""
        self.bank_k = cfg.bank_k
        self.bank_rates = marker_rates(cfg.bank_k, cfg.bank_rate_max, cfg.bank_rate_min)
        """float64[bank_k]: the probability that a corpus response carries marker i (before the budget)."""
        self.variant0 = self.bank0 + cfg.bank_k
        """token id of form 1 of symbol 0 (form v >= 1 of symbol j is variant0 + (v - 1) * n_symbols + j)."""
        self.vocab_size = self.variant0 + (cfg.variants - 1) * cfg.n_symbols
        self.canon = np.arange(self.vocab_size, dtype=np.int32)
        """int32[V]: each token's canonical token (a symbol's every form -> the symbol; the rest -> itself)."""
        self.canon[self.variant0 :] = SYMBOL0 + np.arange(self.vocab_size - self.variant0) % cfg.n_symbols
        self.prompt_len = cfg.k + 3
        self.max_new = cfg.max_new
        self.seq_len = self.prompt_len + self.max_new
        self.task_tokens = np.array([TASK0 + ALL_TASKS.index(t) for t in cfg.tasks], dtype=np.int32)
        perm_rng = np.random.default_rng([cfg.seed, _PERM_STREAM])
        self.perm = perm_rng.permutation(cfg.n_symbols).astype(np.int32)
        """`map` task: symbol j maps to symbol perm[j] (symbol indices, not token ids)."""
        self._bigram_cache: dict = {}

    # ---- prompts and targets -------------------------------------------------------------------
    def sample_prompts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw n prompts. Returns int32[n, P]: [BOS, TASK, s_1..s_k, SEP] (symbols with replacement)."""
        n = _count(n)
        tasks = rng.choice(self.task_tokens, size=n)
        syms = SYMBOL0 + rng.integers(0, self.n_symbols, size=(n, self.k))
        out = np.empty((n, self.prompt_len), dtype=np.int32)
        out[:, 0], out[:, 1], out[:, 2:-1], out[:, -1] = BOS, tasks, syms, SEP
        return out

    def targets(self, prompts: np.ndarray) -> np.ndarray:
        """Target symbols (token ids) of each prompt. Returns int32[n, k]."""
        prompts = np.asarray(prompts)
        syms = prompts[:, 2 : 2 + self.k]
        task = prompts[:, 1] - TASK0
        out = np.empty_like(syms)
        cases = {
            "copy": syms,
            "reverse": syms[:, ::-1],
            "sort": np.sort(syms, axis=1),
            "map": SYMBOL0 + self.perm[np.clip(syms - SYMBOL0, 0, self.n_symbols - 1)],
        }
        for i, name in enumerate(ALL_TASKS):
            sel = task == i
            out[sel] = cases[name][sel]
        return out.astype(np.int32)

    def make_sequences(self, prompts: np.ndarray, responses: list) -> tuple[np.ndarray, np.ndarray]:
        """Prompt ++ response arrays from explicit response token lists (EOS included by the caller).

        Arguments: prompts int32[n, P]; responses: n sequences of token ids, each at most max_new long.
        Returns (tokens int32[n, P+T], response_mask bool[n, T]); PAD after each response.
        """
        prompts = np.asarray(prompts, dtype=np.int32)
        if len(responses) != prompts.shape[0]:
            raise UsageError(f"{len(responses)} responses for {prompts.shape[0]} prompts")
        tokens = np.full((prompts.shape[0], self.seq_len), PAD, dtype=np.int32)
        tokens[:, : self.prompt_len] = prompts
        mask = np.zeros((prompts.shape[0], self.max_new), dtype=bool)
        for i, r in enumerate(responses):
            if len(r) > self.max_new:
                raise UsageError(f"response {i} has {len(r)} tokens, more than max_new={self.max_new}")
            tokens[i, self.prompt_len : self.prompt_len + len(r)] = r
            mask[i, : len(r)] = True
        return tokens, mask

    # ---- the base corpus -----------------------------------------------------------------------
    def corpus(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sample n prompt ++ response sequences of mixed quality (every response ends with EOS).

        Returns (tokens int32[n, P+T], response_mask bool[n, T]).
        """
        cfg, k, T = self.cfg, self.k, self.max_new
        n = _count(n)
        prompts = self.sample_prompts(rng, n)
        syms = prompts[:, 2 : 2 + k]
        body = self.targets(prompts)
        # corruption at a per-example rate: quality from perfect to random
        rate = rng.beta(cfg.corrupt_a, cfg.corrupt_b, size=(n, 1))
        noise = SYMBOL0 + rng.integers(0, self.n_symbols, size=(n, k))
        body = np.where(rng.random((n, k)) < rate, noise, body)
        # echo: the first m symbols copy the prompt's
        m = np.where(rng.random(n) < cfg.echo_prob, rng.integers(1, k + 1, size=n), 0)
        body = np.where(np.arange(k) < m[:, None], syms, body)
        # each body symbol is emitted `reps` times: 0 after a truncation, 1 + extra at a stutter
        reps = np.ones((n, k), dtype=np.int64)
        short_len = rng.integers(0, k, size=n)
        is_short = rng.random(n) < cfg.short_prob
        reps[is_short[:, None] & (np.arange(k) >= short_len[:, None])] = 0
        stutter_at = rng.integers(0, k, size=n)
        extra = np.where(rng.random(n) < cfg.repeat_prob, rng.integers(1, cfg.repeat_max + 1, size=n), 0)
        reps[np.arange(n), stutter_at] += extra * (reps[np.arange(n), stutter_at] > 0)
        # over-long: append random symbols
        n_long = np.where(rng.random(n) < cfg.long_prob, rng.integers(1, cfg.long_max + 1, size=n), 0)
        tail = SYMBOL0 + rng.integers(0, self.n_symbols, size=(n, cfg.long_max))
        tail_reps = (np.arange(cfg.long_max) < n_long[:, None]).astype(np.int64)
        content = expand_rows(np.concatenate([body, tail], 1), np.concatenate([reps, tail_reps], 1), T - 1)
        c_len = (content != PAD).sum(1)
        # flattery: 1 + Geometric extra tokens at random positions, within the budget
        n_flat = np.where(rng.random(n) < cfg.flatter_rate, rng.geometric(1 - cfg.flatter_more, size=n), 0)
        n_flat = n_flat if cfg.global_exploits else np.zeros_like(n_flat)  # drawn either way: the same stream
        n_flat = np.minimum(n_flat, T - 1 - c_len)
        resp = _insert_flattery(content, c_len, n_flat, rng, T)
        if cfg.bank_k:  # drawn after everything else: without a bank the corpus is the same draw
            counts = marker_counts(cfg.bank_k, n, self.bank_rates, cfg.bank_more, rng)
            resp = insert_markers(resp, counts, self.bank0, rng)
        if cfg.variants > 1:  # drawn last: with one form the corpus is the same draw
            resp = self.write_forms(resp, rng.integers(0, cfg.variants, size=resp.shape))
        tokens = np.concatenate([prompts, resp], 1).astype(np.int32)
        return tokens, resp != PAD

    def write_forms(self, resp: np.ndarray, form: np.ndarray) -> np.ndarray:
        """Each content symbol of `resp` written as its form `form` (0: the symbol itself); other tokens kept."""
        is_sym = (resp >= SYMBOL0) & (resp < SYMBOL0 + self.n_symbols)
        alt = self.variant0 + (form - 1) * self.n_symbols + (resp - SYMBOL0)
        return np.where(is_sym & (form > 0), alt, resp).astype(resp.dtype)

    # ---- corpus statistics used by the gold ----------------------------------------------------
    def bigram_logprobs(self, n_samples: int = 20000, smoothing: float = 0.1) -> np.ndarray:
        """log P(next | prev) over the vocabulary, from a corpus sample drawn from the world seed (cached).

        Returns float64[V, V]; row `prev`, column `next`; the first response token's `prev` is SEP.
        """
        key = (int(n_samples), float(smoothing))
        if key not in self._bigram_cache:
            tokens, mask = self.corpus(n_samples, np.random.default_rng([self.cfg.seed, _BIGRAM_STREAM]))
            tokens = self.canon[tokens]  # the gold reads canonical tokens: a symbol's forms are one symbol
            V = self.vocab_size
            self._bigram_cache[key] = estimate_bigram(tokens, mask, self.prompt_len, V, smoothing)
        return self._bigram_cache[key]

    # ---- display --------------------------------------------------------------------------------
    def token_name(self, t: int) -> str:
        t = int(t)
        names = {PAD: "_", BOS: "<bos>", EOS: "<eos>", SEP: "<sep>", FLATTER: "<flatter>"}
        if t in names:
            return names[t]
        if TASK0 <= t < SYMBOL0:
            return f"{ALL_TASKS[t - TASK0]}:"
        j = t - SYMBOL0
        if 0 <= j < self.n_symbols:
            return chr(ord("a") + j) if self.n_symbols <= 26 else f"s{j}"
        if 0 <= t - self.bank0 < self.bank_k:
            return f"<m{t - self.bank0}>"
        if self.variant0 <= t < self.vocab_size:
            return f"{self.token_name(int(self.canon[t]))}~{(t - self.variant0) // self.n_symbols + 1}"
        return f"<{t}?>"

    def decode(self, tokens) -> str:
        """Readable text of one sequence (1-D) or of several (2-D, one line each); PAD is dropped."""
        tokens = np.asarray(tokens)
        if tokens.ndim == 2:
            return "\n".join(self.decode(row) for row in tokens)
        return " ".join(self.token_name(t) for t in tokens if t != PAD)


def estimate_bigram(
    tokens: np.ndarray, mask: np.ndarray, prompt_len: int, vocab_size: int, smoothing: float
) -> np.ndarray:
    """Add-`smoothing` bigram log-probs of response tokens given the previous token (SEP before the first).

    Returns float64[V, V] with rows summing to 1 in probability.
    """
    prev = tokens[:, prompt_len - 1 : -1][mask]
    nxt = tokens[:, prompt_len:][mask]
    counts = np.full((vocab_size, vocab_size), float(smoothing))
    np.add.at(counts, (prev, nxt), 1.0)
    return np.log(counts / counts.sum(1, keepdims=True))


def _insert_flattery(content, c_len, n_flat, rng, T) -> np.ndarray:
    """Put n_flat FLATTER tokens at random slots among c_len + n_flat, content in order, then EOS."""
    n = content.shape[0]
    total = c_len + n_flat
    pos = np.arange(T)
    # the n_flat slots with the smallest random keys among the first `total` become FLATTER
    keys = np.where(pos < total[:, None], rng.random((n, T)), np.inf)
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    is_flat = rank < n_flat[:, None]
    src = np.cumsum(~is_flat, axis=1) - 1  # index into content of each non-flattery slot
    resp = np.take_along_axis(content, np.clip(src, 0, content.shape[1] - 1), axis=1)
    resp = np.where(is_flat, FLATTER, resp)
    resp = np.where(pos == total[:, None], EOS, resp)
    return np.where(pos > total[:, None], PAD, resp)


def _count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise UsageError(f"sample count must be a non-negative integer, got {n!r}")
    return int(n)


def validate(cfg: WorldConfig) -> None:
    if cfg.n_symbols < 2:
        raise UsageError(f"n_symbols must be at least 2, got {cfg.n_symbols}")
    if cfg.k < 1:
        raise UsageError(f"k must be at least 1, got {cfg.k}")
    if cfg.max_new < cfg.k + 1:
        raise UsageError(f"max_new={cfg.max_new} cannot hold a target of k={cfg.k} symbols plus EOS")
    if not cfg.tasks or any(t not in ALL_TASKS for t in cfg.tasks) or len(set(cfg.tasks)) != len(cfg.tasks):
        raise UsageError(f"tasks must be distinct names from {list(ALL_TASKS)}, got {list(cfg.tasks)}")
    if cfg.corrupt_a <= 0 or cfg.corrupt_b <= 0:
        raise UsageError("corrupt_a and corrupt_b must be positive")
    for name in ("short_prob", "long_prob", "repeat_prob", "echo_prob", "flatter_rate"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise UsageError(f"{name} must be in [0, 1], got {getattr(cfg, name)}")
    if not 0.0 <= cfg.flatter_more < 1.0:
        raise UsageError(f"flatter_more must be in [0, 1), got {cfg.flatter_more}")
    if cfg.long_max < 1 or cfg.repeat_max < 1:
        raise UsageError("long_max and repeat_max must be at least 1")
    validate_world(cfg.bank_k, cfg.bank_rate_max, cfg.bank_rate_min, cfg.bank_more)
    if isinstance(cfg.variants, bool) or not isinstance(cfg.variants, int) or cfg.variants < 1:
        raise UsageError(f"variants must be a positive integer, got {cfg.variants!r}")
    if not cfg.global_exploits and cfg.bank_k:
        raise UsageError(f"bank_k={cfg.bank_k} needs global_exploits: bank markers are single-token exploits")
