"""Diversity metrics against hand-computed values and a brute-force reference written from the formulas."""

import math

import numpy as np
import pytest

from core.errors import UsageError
from rl.diversity import bleu, distinct_n, diversity, responses, self_bleu


def _windows(seq, n):
    return [list(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def brute_bleu(hyp, refs, max_n=4, eps=0.1):
    """Papineni BLEU by list scans: clip each hypothesis n-gram by its max count in any one reference."""
    hyp = list(hyp)
    orders = [n for n in range(1, max_n + 1) if n <= len(hyp)]
    logs = []
    for n in orders:
        hw = _windows(hyp, n)
        uniq = []
        for g in hw:
            if g not in uniq:
                uniq.append(g)
        matched = 0
        for g in uniq:
            best = max(_windows(list(r), n).count(g) for r in refs)
            matched += min(hw.count(g), best)
        logs.append(math.log(max(matched, 0) / len(hw)) if matched else math.log(eps / len(hw)))
    lens = sorted(len(r) for r in refs)
    r = lens[0]
    for L in lens:
        if abs(L - len(hyp)) < abs(r - len(hyp)):
            r = L
    bp = 1.0 if len(hyp) > r else math.exp(1 - r / len(hyp))
    return bp * math.exp(sum(logs) / len(logs))


def test_bleu_hand_computed():
    # p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0 -> 0.1/1; equal lengths -> BP = 1
    want = (0.75 * (2 / 3) * 0.5 * 0.1) ** 0.25
    assert bleu((1, 2, 3, 4), [(1, 2, 3, 5)]) == pytest.approx(want, rel=1e-12)
    # clipping: "7 7 7 7" against a reference with one 7: p1 = 1/4; p2..p4 have no match
    want = (0.25 * (0.1 / 3) * (0.1 / 2) * 0.1) ** 0.25
    assert bleu((7, 7, 7, 7), [(7, 8)]) == pytest.approx(want, rel=1e-12)  # c = 4 > r = 2: BP = 1
    # brevity: hyp of length 2 against a length-4 reference containing it -> BP = exp(1 - 4/2), orders 1..2
    assert bleu((5, 6), [(5, 6, 9, 9)]) == pytest.approx(math.exp(1 - 2), rel=1e-12)
    # identical -> 1; the closest reference length wins (tie -> shorter)
    assert bleu((1, 2, 3), [(1, 2, 3)]) == pytest.approx(1.0)
    # closest length is 1 (|1-3| < |6-3|), so no brevity penalty; clipping uses the max over references
    assert bleu((1, 2, 3), [(9,), (1, 2, 3, 4, 5, 6)]) == pytest.approx(1.0)
    assert bleu((1, 2, 3), [(1, 2, 3, 4, 5, 6)]) == pytest.approx(math.exp(1 - 6 / 3))
    assert bleu((1, 2), [(1,), (1, 2, 3)]) == pytest.approx(1.0)  # r = 1 (tie 1 vs 3 -> shorter): no penalty


def test_bleu_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(200):
        hyp = tuple(rng.integers(0, 4, size=rng.integers(1, 9)))
        refs = [tuple(rng.integers(0, 4, size=rng.integers(1, 9))) for _ in range(rng.integers(1, 5))]
        assert bleu(hyp, refs) == pytest.approx(brute_bleu(hyp, refs), rel=1e-12)
        want = brute_bleu(hyp, refs, 2, 0.5)
        assert bleu(hyp, refs, max_n=2, epsilon=0.5) == pytest.approx(want, rel=1e-12)


def test_distinct_n_brute_force():
    rng = np.random.default_rng(1)
    seqs = [tuple(rng.integers(0, 3, size=rng.integers(1, 7))) for _ in range(30)]
    for n in (1, 2, 3):
        allg = [tuple(w) for s in seqs for w in _windows(s, n)]
        assert distinct_n(seqs, n) == pytest.approx(len(set(allg)) / len(allg))
    assert distinct_n([(1, 1, 1)], 1) == pytest.approx(1 / 3)
    assert distinct_n([(1,)], 2) == 0.0


def test_self_bleu_and_diversity():
    rng = np.random.default_rng(2)
    seqs = [tuple(rng.integers(0, 5, size=rng.integers(2, 8))) for _ in range(10)]
    want = np.mean([brute_bleu(s, seqs[:i] + seqs[i + 1 :]) for i, s in enumerate(seqs)])
    assert self_bleu(seqs, sample=None) == pytest.approx(want, rel=1e-12)
    assert self_bleu([(1, 2, 3)] * 5) == pytest.approx(1.0)  # full collapse
    assert math.isnan(self_bleu([(1,)]))
    # subsample: 5 of 10, deterministic for the rng
    a = self_bleu(seqs, sample=5, rng=np.random.default_rng(3))
    idx = np.random.default_rng(3).choice(10, size=5, replace=False)
    sub = [seqs[i] for i in idx]
    assert a == pytest.approx(np.mean([brute_bleu(s, sub[:i] + sub[i + 1 :]) for i, s in enumerate(sub)]))

    # full sequences: prompt of 2, responses of up to 4 (through EOS=2), PAD after
    tokens = np.array([[1, 3, 5, 6, 2, 0], [1, 3, 2, 0, 0, 0], [1, 3, 5, 5, 5, 5]])
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=bool)
    assert responses(tokens, mask, 2) == [(5, 6, 2), (2,), (5, 5, 5, 5)]
    d = diversity(tokens, mask, 2, bleu_sample=None)
    assert d["length"] == pytest.approx(8 / 3)
    assert d["distinct_1"] == pytest.approx(3 / 8)
    assert d["distinct_2"] == pytest.approx(3 / 5)  # (5,6),(6,2),(5,5)x3
    with pytest.raises(UsageError):
        responses(tokens, mask, 3)
