"""Benchmarks: one tiny row of each kind is timed (every bench_* module at the `tiny` scale, in this
process) and its ratio follows the convention of `common.row`; the command line writes valid JSON and a
table; the analytic FLOP counts equal the matrix products in the traced programs. Timing is never asserted
(the numbers mean nothing at this size)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ sits beside the installed packages, not inside them
    sys.path.insert(0, str(ROOT))

from benchmarks import __main__ as bench_main  # noqa: E402
from benchmarks import common  # noqa: E402

HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
# module -> the name prefix of each of its rows (one row of each kind at the tiny scale)
ROWS = {
    "sampling": ("sampling ",),
    "ppo": ("PPO update ",),
    "rm": ("RM training ",),
    "grid": ("PPO grid of 8 kl_coef",),
    "ceiling": ("FLOP/s RM training ", "FLOP/s PPO update "),
    "fit": ("fit 2 groups x 20",),
    "hf": ("hf sampling gpt2 ", "hf sampling llama "),
}
TORCH_PEER = ("sampling", "ppo", "rm", "hf")


def _clear_caches():
    from benchmarks import bench_ppo

    bench_ppo.setup.cache_clear()
    bench_ppo.ppo_config.cache_clear()


@pytest.fixture(scope="module")
def tiny():
    """The `tiny` scale (OVEROPT_BENCH_TINY=1) for this module; bench_ppo's set-up is built once for it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(common.TINY_ENV, "1")
        _clear_caches()
        try:
            yield
        finally:
            _clear_caches()


def test_benchmarks_and_row_names_agree():
    assert tuple(ROWS) == bench_main.MODULES


@pytest.mark.parametrize("name", list(ROWS))
def test_one_tiny_row_of_each_kind_and_its_ratio(tiny, name):
    assert common.scale(True) == "tiny"
    module = importlib.import_module(f"benchmarks.bench_{name}")
    if name in TORCH_PEER and not HAVE_TORCH:  # the modules whose peer is PyTorch say why they cannot run
        with pytest.raises(common.Skip, match="PyTorch peer not installed"):
            module.rows(True)
        return
    raw = module.rows(True)
    assert [sum(r["name"].startswith(p) for r in raw) for p in ROWS[name]] == [1] * len(ROWS[name]), raw
    assert len(raw) == len(ROWS[name])
    for own in raw:
        r = common.normalise(own)  # what `python -m benchmarks` reports
        assert set(r) >= {"name", "ours", "peer", "unit", "ratio"}
        assert r["ours"] > 0 and r["peer"] > 0 and math.isfinite(r["ratio"])
        assert r["unit"] == "s" or r["unit"].endswith("/s")  # a duration or a rate
        # The ratio is the speed-up of ours: a rate divides ours by the peer, a duration the other way.
        want = r["peer"] / r["ours"] if r["unit"] == "s" else r["ours"] / r["peer"]
        assert r["ratio"] == pytest.approx(want, rel=1e-12)
        # rows made by common.row carry that ratio already; bench_fit's own is ours / peer (seconds), flipped
        mine = r["ours"] / r["peer"] if name == "fit" else want
        assert own["ratio"] == pytest.approx(mine, rel=1e-12)


def test_command_line_writes_json_and_one_table_line_per_row(tiny, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_main.main(["--only", "fit", "--json", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    data = json.loads(out.read_text())
    assert {"machine", "date", "load", "results", "skipped"} <= set(data) and data["mode"] == "tiny"
    assert data["machine"]["cores"] >= 1 and data["machine"]["cpu"]
    [r] = data["results"]
    assert r["name"].startswith(ROWS["fit"][0]) and data["skipped"] == []
    assert r["unit"] == "s" and r["ratio"] == pytest.approx(r["peer"] / r["ours"], rel=1e-12)  # bench_fit's flipped
    assert sum(line.startswith(f"| {ROWS['fit'][0]}") for line in printed) == 1


def test_cli_rejects_unknown_benchmark():
    """Through `python -m benchmarks` (the entry point; it exits before importing JAX)."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 2 and "unknown benchmark 'nope'" in proc.stderr


def test_median_seconds_alternates_and_skips_warmup():
    calls = []
    fns = [lambda i=i: calls.append(i) for i in range(2)]
    medians = common.median_seconds(*fns, repeat=3, warmup=2)
    assert calls == [0, 0, 1, 1] + [0, 1] * 3 and len(medians) == 2 and all(m >= 0 for m in medians)


def test_responses_follow_the_token_layout():
    from core.tokens import EOS, PAD

    rng = np.random.default_rng(0)
    tokens, mask = common.responses(common.prompts(200, rng), rng)
    resp = tokens[:, common.PROMPT_LEN :]
    for row, m in zip(resp, mask):
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any() and n >= 1  # a prefix
        assert (row[n:] == PAD).all() and (row[: n - 1] != EOS).all() and (row[: n - 1] > PAD).all()
        assert row[n - 1] == EOS or n == len(row)  # ends in EOS unless truncated


# ---------------------------------------------------------------- FLOP counts against the traced programs


def dot_flops(jaxpr, while_trips: int) -> int:
    """2 x multiply-adds of every dot_general in a jaxpr, scans times their length, while loops times
    `while_trips` (the reference the analytic counts are checked against)."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2 * int(np.prod(eqn.outvars[0].aval.shape)) * int(np.prod([lhs[i] for i in contract]))
            continue
        times = {"scan": eqn.params.get("length", 1), "while": while_trips}.get(eqn.primitive.name, 1)
        for name, p in eqn.params.items():
            if eqn.primitive.name == "while" and name == "cond_jaxpr":
                continue
            for sub in p if isinstance(p, (tuple, list)) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    total += times * dot_flops(inner, while_trips)
    return total


def test_rm_train_flops_match_traced_step():
    import optax

    from benchmarks import bench_ceiling, bench_rm
    from proxy_rm.train import bt_loss_and_acc, init_states, make_optimizer

    arch, pairs = common.Arch(2, 16, 2), 3
    graphdef, states = init_states(common.model_config(arch), [0])
    state = jax.tree.map(lambda x: x[0], states)
    batch = tuple(jnp.asarray(x[:pairs]) for x in bench_rm.comparisons(8))
    opt = make_optimizer(bench_rm.train_config(), 100)

    def step(st, os_):
        grads = jax.grad(lambda s: bt_loss_and_acc(graphdef, s, batch, common.PROMPT_LEN)[0])(st)
        return optax.apply_updates(st, opt.update(grads, os_, st)[0])

    traced = dot_flops(jax.make_jaxpr(step)(state, opt.init(state)).jaxpr, 0)
    assert traced == bench_ceiling.rm_train_flops(arch, pairs)


def test_ppo_update_flops_match_traced_update(tiny):
    from benchmarks import bench_ceiling, bench_ppo

    s = bench_ppo.setup(True)
    cfg, fns = s["cfg"], s["fns"]
    hyper = cfg.hyper()
    runner = fns.init(s["policy_state"], hyper, jnp.int32(0))
    jaxpr = fns.chunk.trace(runner, hyper, s["ref_state"], s["bank"], *s["scorer_params"]).jaxpr.jaxpr
    policy, rm = bench_ppo.sizes(True)
    want = cfg.eval_every * bench_ceiling.ppo_update_flops(policy, rm, cfg.batch_size, cfg.max_new, cfg.epochs)
    assert dot_flops(jaxpr, cfg.max_new - 1) == want
