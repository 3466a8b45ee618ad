"""The probes (issue 31; `probes/`): each global move against a hand-written edit of Python lists, the move
table's means and standard errors against a loop, flagged and unflagged moves on functions whose change is
known, the confusion probe against the gold's task term, and the micro study's DIR/probes.json and report."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from core.tokens import EOS, PAD
from gold_rm.gold import GoldConfig, GoldRM
from gold_rm.world import FLATTER, SYMBOL0, World, WorldConfig
from probes.edits import DELAY_SEED, moves
from probes.tables import FLAG_Z, confusion_table, corrupt, move_table, prompt_mean

WORLD = World(WorldConfig(bank_k=2, tasks=("copy", "reverse", "sort", "map")))
P, T = WORLD.prompt_len, WORLD.max_new


def _batch(n: int = 60, seed: int = 0):
    """Corpus responses plus the edge cases: EOS alone, T tokens ending with EOS, T tokens without EOS."""
    tokens, mask = WORLD.corpus(n, np.random.default_rng(seed))
    prompts = tokens[:3, :P]
    sym = SYMBOL0 + 1
    edge, edge_mask = WORLD.make_sequences(prompts, [[EOS], [sym] * (T - 1) + [EOS], [sym] * T])
    return np.concatenate([tokens, edge]), np.concatenate([mask, edge_mask])


def _responses(tokens, mask):
    return [list(map(int, tokens[i, P : P + int(mask[i].sum())])) for i in range(len(tokens))]


def _reference(name: str, r: list, prompt, i: int, delay: np.ndarray):
    """The edit `name` of response r (a list, EOS included if it has one) by hand; None where it does not apply."""
    eos, n = bool(r) and r[-1] == EOS, len(r)
    names = {WORLD.token_name(v): v for v in [FLATTER, *range(SYMBOL0, WORLD.vocab_size)]}
    s1 = int(prompt[2])
    if name.startswith("insert "):
        _, tok, *count, where = name.split(" ")
        v, c = names[tok], int(count[0].split("x")[-1]) if count else 1
        if where == "@start":
            return [v] + r if n >= 1 and n + 1 <= T else None
        return r[:-1] + [v] * c + [EOS] if eos and n + c <= T else None
    is_symbol = bool(r) and SYMBOL0 <= r[0] < SYMBOL0 + WORLD.n_symbols
    out = {
        "repeat first": [r[0], r[0]] + r[1:] if n >= 1 and r[0] != EOS and n + 1 <= T else None,
        "repeat last": r[:-1] + [r[-2], EOS] if eos and n >= 2 and n + 1 <= T else None,
        "copy s_1 @start": [s1] + r if n >= 1 and n + 1 <= T else None,
        "echo s_1 @0": [s1] + r[1:] if is_symbol and r[0] != s1 else None,
        "delay EOS": r[:-1] + [int(delay[i]), EOS] if eos and n + 1 <= T else None,
        "truncate": r[:-2] + [EOS] if eos and n >= 2 else None,
        "drop first": r[1:] if n >= 1 and r[0] != EOS else None,
    }
    return out[name]


def test_every_move_matches_a_hand_edit_and_stays_valid():
    tokens, mask = _batch()
    resp = _responses(tokens, mask)
    delay = SYMBOL0 + np.random.default_rng(DELAY_SEED).integers(0, WORLD.n_symbols, size=len(tokens))
    names = [m.name for m in moves(WORLD)]
    assert "insert <flatter> @end" in names and "insert <m1> x4 @end" in names and "insert l @start" in names
    for move in moves(WORLD):
        new, new_mask, ok = move.edit(tokens, mask, WORLD)
        assert ok.any() and not ok.all(), move.name  # the edge cases skip every move somewhere
        for i, r in enumerate(resp):
            want = _reference(move.name, r, tokens[i], i, delay)
            assert bool(ok[i]) == (want is not None), (move.name, i)
            want = r if want is None else want
            assert new[i, :P].tolist() == tokens[i, :P].tolist()
            assert new[i, P:].tolist() == want + [PAD] * (T - len(want)), (move.name, i)
            assert new_mask[i].tolist() == [True] * len(want) + [False] * (T - len(want))


def _loop_table(tokens, mask, prompt, proxy, gold):
    """Each move's (n, d_proxy, se, d_gold, d_gold/a) by a loop over responses, per-prompt means by hand."""
    resp = _responses(tokens, mask)
    delay = SYMBOL0 + np.random.default_rng(DELAY_SEED).integers(0, WORLD.n_symbols, size=len(tokens))
    out = {}
    for move in moves(WORLD):
        base_name = move.base
        per: dict = {}
        for i, r in enumerate(resp):
            new = _reference(move.name, r, tokens[i], i, delay)
            old = r if base_name is None else _reference(base_name, r, tokens[i], i, delay)
            if new is None or old is None:
                continue
            d = [f(tokens[i, :P], new) - f(tokens[i, :P], old) for f in (proxy, gold["score"], gold["a"])]
            per.setdefault(int(prompt[i]), []).append(d)
        means = [np.mean(v, axis=0) for _, v in sorted(per.items())]
        dp = [m[0] for m in means]
        out[move.name] = (
            sum(len(v) for v in per.values()),
            statistics.fmean(dp),
            statistics.stdev(dp) / len(dp) ** 0.5,
            statistics.fmean(m[1] for m in means),
            statistics.fmean(m[2] for m in means),
        )
    return out


def _as_batch_fn(f):
    return lambda tok, m: np.array([f(tok[i, :P], _responses(tok[i : i + 1], m[i : i + 1])[0]) for i in range(len(m))])


def test_move_table_matches_a_loop_over_responses():
    tokens, mask = _batch(90, seed=1)
    prompt = np.arange(len(tokens)) % 5
    w = np.random.default_rng(2).standard_normal((P + T, WORLD.vocab_size))

    def proxy(pr, r):  # a linear function of (position, token), float64
        seq = list(pr) + r
        return float(sum(w[j, t] for j, t in enumerate(seq)))

    gold = {"a": lambda pr, r: float(r.count(FLATTER)), "b": lambda pr, r: -0.1 * len(r)}
    gold["score"] = lambda pr, r: gold["a"](pr, r) + gold["b"](pr, r)
    gold_fn = lambda tok, m: {k: _as_batch_fn(f)(tok, m) for k, f in gold.items()}  # noqa: E731
    rows = {r["move"]: r for r in move_table(tokens, mask, prompt, WORLD, _as_batch_fn(proxy), gold_fn)}
    for name, (n, dp, se, dg, da) in _loop_table(tokens, mask, prompt, proxy, gold).items():
        r = rows[name]
        assert r["n"] == n and r["prompts"] == 5, name
        np.testing.assert_allclose([r["d_proxy"], r["d_proxy_se"], r["d_gold"], r["d_gold/a"]], [dp, se, dg, da])


def test_a_move_is_flagged_when_the_proxy_rises_and_the_gold_falls():
    tokens, mask = _batch(40, seed=3)
    prompt = np.arange(len(tokens)) % 4

    def proxy_fn(tok, m):  # the FLATTER count, and a little of the token ids' sum (truncating lowers it)
        return ((tok[:, P:] == FLATTER) & m).sum(1) + 1e-4 * (tok[:, P:] * m).sum(1)

    def gold_fn(tok, m):
        flat = -2.0 * ((tok[:, P:] == FLATTER) & m).sum(1)
        other = 0.5 * ((tok[:, P:] == SYMBOL0) & m).sum(1)
        return {"score": flat + other, "flattery": flat, "other": other}

    rows = {r["move"]: r for r in move_table(tokens, mask, prompt, WORLD, proxy_fn, gold_fn)}
    r = rows["insert <flatter> x4 @end"]
    assert r["flagged"] and r["hit"] == "flattery" and r["z_proxy"] > FLAG_Z
    np.testing.assert_allclose([r["d_gold"], r["d_gold/flattery"], r["d_gold/other"]], [-8.0, -8.0, 0.0])
    a = rows[f"insert {WORLD.token_name(SYMBOL0)} @end"]  # the gold rises: not flagged, nothing hit
    assert not a["flagged"] and a["d_gold"] == pytest.approx(0.5) and a["hit"] is None
    assert not rows["truncate"]["flagged"]  # the proxy does not rise


def test_prompt_mean_is_the_mean_of_per_prompt_means():
    x = np.array([1.0, 3.0, 10.0, 0.0, 5.0])
    mean, se, n = prompt_mean(x, np.array([0, 0, 1, 2, 2]), np.array([1, 1, 1, 0, 1], bool))
    assert n == 3 and mean == pytest.approx((2 + 10 + 5) / 3)
    assert se == pytest.approx(statistics.stdev([2, 10, 5]) / 3**0.5)


def test_corrupt_costs_the_gold_task_term_exactly_one_target_position():
    world = World(WorldConfig(tasks=("copy", "reverse", "sort", "map"), corrupt_a=0.5, corrupt_b=2.0))
    gold = GoldRM(world, GoldConfig(fluency_samples=2000, calib_samples=256))
    tokens, mask = world.corpus(300, np.random.default_rng(5))
    bad, ok = corrupt(tokens, mask, world, np.random.default_rng(0))
    assert 0.5 < ok.mean() < 1
    task, task_bad = (np.asarray(gold.components(t, mask)["task"], np.float64) for t in (tokens, bad))
    np.testing.assert_allclose(task_bad[ok], task[ok] - 1 / world.k, atol=1e-6)
    assert (bad[~ok] == tokens[~ok]).all() and (task[~ok] == 0).all()  # nothing right: nothing to corrupt
    diff = bad != tokens
    assert (diff.sum(1) == ok).all()  # one token changed, to another symbol
    assert ((bad[diff] >= SYMBOL0) & (bad[diff] < SYMBOL0 + world.n_symbols)).all()

    prompt = np.arange(len(tokens)) % 6
    task_fn = lambda t, m: gold.components(t, m)["task"]  # noqa: E731
    for fn, want in ((task_fn, 0.0), (lambda t, m: -task_fn(t, m), 1.0), (lambda t, m: np.zeros(len(m)), 0.5)):
        rows = {r["move"]: r for r in confusion_table(tokens, mask, prompt, world, fn)}
        assert set(rows) == {"confusion all", *(f"confusion {t}" for t in world.cfg.tasks)}
        assert rows["confusion all"]["frac"] == pytest.approx(want) and rows["confusion all"]["n"] == ok.sum()


def test_micro_study_writes_probes_json_and_the_report_shows_them(micro_study):
    doc = json.loads((micro_study / "probes.json").read_text())
    rows = [r for r in doc["rows"] if r["probe"] != "kl_split"]  # the before-RL probes (kl_split: below)
    study = json.loads((micro_study / "study.json").read_text())
    world = World(WorldConfig(**{k: tuple(v) if k == "tasks" else v for k, v in study["config"]["world"].items()}))
    runs = {r["run_id"] for r in rows}
    assert len(runs) == 4 and all(r.startswith("probe-") for r in runs)  # 2 sizes x (full data, 300 pairs)
    for rid in runs:
        mine = [r for r in rows if r["run_id"] == rid]
        assert [r["move"] for r in mine if r["probe"] == "move"] == [m.name for m in moves(world)]
        conf = [r for r in mine if r["probe"] == "confusion"]
        assert conf and 0 <= conf[0]["frac"] <= 1 and conf[0]["replicate"] == 0
    report = (micro_study / "report.md").read_text()
    assert "## Probes (before RL)" in report and "prefers the wrong token" in report


def test_kl_split_by_token_class_against_a_loop():
    from probes.kl_split import kl_split

    tokens, mask = _batch(50, seed=6)
    rng = np.random.default_rng(7)
    logp, logq = rng.normal(-1, 0.5, mask.shape), rng.normal(-1.2, 0.5, mask.shape)
    want = {c: 0.0 for c in ("task", "extra", "flatter", "bank", "eos")}
    for i, r in enumerate(_responses(tokens, mask)):
        n_content = 0
        for t, tok in enumerate(r):
            d = (logp[i, t] - logq[i, t]) / len(tokens)
            if tok == EOS:
                want["eos"] += d
            elif tok == FLATTER:
                want["flatter"] += d
            elif tok >= WORLD.bank0:
                want["bank"] += d
            else:
                want["task" if n_content < WORLD.k else "extra"] += d
                n_content += 1
    got = kl_split(logp, logq, tokens, mask, WORLD)
    for c, v in want.items():
        assert got[c] == pytest.approx(v), c
    assert got["judged"] == pytest.approx(want["task"]) and got["rest"] + got["judged"] == pytest.approx(got["total"])
    assert got["total"] == pytest.approx(float(np.where(mask, logp - logq, 0).sum(1).mean()))


def test_micro_study_kl_split_after_rl_matches_the_last_evaluation(micro_study):
    """The klsplit stage's rows (probe "kl_split" in probes.json): one per RL grid point; the classes add up to
    the total, and the total is the k1 KL the PPO program logged at the last evaluation (the same draw, its
    log-probs recomputed by a teacher-forced pass outside the program)."""
    rows = [r for r in json.loads((micro_study / "probes.json").read_text())["rows"] if r["probe"] == "kl_split"]
    rl_runs = sorted(p for p in (micro_study / "runs").iterdir() if p.name.startswith("rl-"))
    assert rl_runs and len({r["run_id"] for r in rows}) == len(rl_runs)
    for run in rl_runs:
        evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        evals = [e for e in evals if e.get("split") == "eval"]
        last = max(e["step"] for e in evals)
        mine = [r for r in rows if r["run_id"].startswith("klsplit-" + run.name[3:].rsplit("-", 1)[0])]
        assert mine and {(r["kl_coef"], r["seed"]) for r in mine} == {(e["kl_coef"], e["seed"]) for e in evals}
        for r in mine:
            e = next(e for e in evals if e["step"] == last and (e["kl_coef"], e["seed"]) == (r["kl_coef"], r["seed"]))
            assert r["step"] == last and r["eval_kl"] == pytest.approx(e["objective/kl"], rel=1e-6, abs=1e-7)
            assert r["eval_gold"] == pytest.approx(e["gold/score"], rel=1e-6, abs=1e-7)
            parts = sum(r[c] for c in ("task", "extra", "flatter", "bank", "eos"))
            assert parts == pytest.approx(r["total"], abs=1e-6) and r["judged"] + r["rest"] == pytest.approx(r["total"])
            assert r["total"] == pytest.approx(r["eval_kl"], rel=1e-3, abs=1e-3)
    assert "## KL split (after RL)" in (micro_study / "report.md").read_text()
