"""Diversity metrics of sampled responses (numpy, outside jit): distinct-n, self-BLEU, length.

Mode collapse under RL shows as fewer distinct n-grams and a higher self-BLEU.

- A response is its tokens up to and including EOS (the `response_mask` positions), so an
  immediately-ended response is the one-token sequence [EOS] and never empty.
- distinct-n (Li et al. 2016): distinct n-grams across all responses / total n-grams.
- BLEU (Papineni et al. 2002) of one hypothesis against several references: clipped n-gram
  precisions p_n (hypothesis counts clipped by the max count in any one reference), geometric
  mean with uniform weights, brevity penalty exp(1 - r/c) when the hypothesis length c is below
  the closest reference length r (ties: the shorter reference). Orders n above the hypothesis
  length are dropped (sacrebleu's "effective order"), and a zero match count is replaced by
  `epsilon` (NLTK's smoothing method1, as in Texygen's self-BLEU), so short responses stay defined.
- self-BLEU (Zhu et al. 2018): mean BLEU of each response against all the others.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from core.errors import UsageError


def responses(tokens: np.ndarray, response_mask: np.ndarray, prompt_len: int) -> list[tuple[int, ...]]:
    """Response token tuples (through EOS) from full sequences.

    Arguments: tokens int[B, P+T]; response_mask bool[B, T]; prompt_len P.
    Returns: B tuples of ints.
    """
    tokens = np.asarray(tokens)
    mask = np.asarray(response_mask, dtype=bool)
    if tokens.ndim != 2 or mask.shape != (tokens.shape[0], tokens.shape[1] - prompt_len):
        raise UsageError(f"tokens {tokens.shape} and mask {mask.shape} mismatch at prompt_len {prompt_len}")
    resp = tokens[:, prompt_len:]
    return [tuple(int(t) for t in row[m]) for row, m in zip(resp, mask, strict=True)]


def ngrams(seq: tuple[int, ...], n: int) -> Counter:
    """Counts of the n-grams of one sequence."""
    return Counter(tuple(seq[i : i + n]) for i in range(len(seq) - n + 1))


def distinct_n(seqs: list[tuple[int, ...]], n: int) -> float:
    """Distinct n-grams across all sequences / total n-grams (0.0 when there are none)."""
    total = 0
    seen: set = set()
    for s in seqs:
        c = ngrams(s, n)
        total += sum(c.values())
        seen.update(c)
    return len(seen) / total if total else 0.0


def bleu(hyp: tuple[int, ...], refs: list[tuple[int, ...]], max_n: int = 4, epsilon: float = 0.1) -> float:
    """Sentence BLEU of `hyp` against `refs` (effective order, method1 smoothing; see module doc).

    Arguments: hyp, refs token sequences; max_n highest n-gram order; epsilon numerator for a zero match.
    Returns: BLEU in [0, 1].
    """
    if not refs:
        raise UsageError("bleu needs at least one reference")
    c = len(hyp)
    if c == 0:
        return 0.0
    orders = range(1, min(max_n, c) + 1)
    log_p = 0.0
    for n in orders:
        h = ngrams(hyp, n)
        max_ref: Counter = Counter()
        for r in refs:
            for g, k in ngrams(r, n).items():
                if k > max_ref[g]:
                    max_ref[g] = k
        matched = sum(min(k, max_ref[g]) for g, k in h.items())
        log_p += math.log((matched if matched > 0 else epsilon) / sum(h.values()))
    r = min((len(x) for x in refs), key=lambda L: (abs(L - c), L))
    bp = 1.0 if c > r else math.exp(1.0 - r / c)
    return bp * math.exp(log_p / len(orders))


def self_bleu(
    seqs: list[tuple[int, ...]],
    max_n: int = 4,
    epsilon: float = 0.1,
    sample: int | None = 64,
    rng: np.random.Generator | None = None,
) -> float:
    """Mean BLEU of each sequence against all the others, on a random subsample of `sample` sequences.

    Arguments: seqs; max_n, epsilon as in `bleu`; sample subsample size (None: all); rng for the subsample.
    Returns: self-BLEU in [0, 1] (nan with fewer than two sequences).
    """
    seqs = list(seqs)
    if sample is not None and len(seqs) > sample:
        rng = rng if rng is not None else np.random.default_rng(0)
        seqs = [seqs[i] for i in rng.choice(len(seqs), size=sample, replace=False)]
    if len(seqs) < 2:
        return float("nan")
    scores = [bleu(s, seqs[:i] + seqs[i + 1 :], max_n=max_n, epsilon=epsilon) for i, s in enumerate(seqs)]
    return float(np.mean(scores))


def diversity(
    tokens: np.ndarray,
    response_mask: np.ndarray,
    prompt_len: int,
    bleu_sample: int | None = 64,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """distinct_1, distinct_2, self_bleu and mean response length (tokens through EOS) of a batch.

    Arguments: tokens int[B, P+T]; response_mask bool[B, T]; prompt_len; bleu_sample, rng for self-BLEU.
    Returns: {"distinct_1", "distinct_2", "self_bleu", "length"}.
    """
    seqs = responses(tokens, response_mask, prompt_len)
    return {
        "distinct_1": distinct_n(seqs, 1),
        "distinct_2": distinct_n(seqs, 2),
        "self_bleu": self_bleu(seqs, sample=bleu_sample, rng=rng),
        "length": float(np.mean([len(s) for s in seqs])) if seqs else float("nan"),
    }
