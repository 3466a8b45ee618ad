"""`overopt figures` on several trainer runs (issue 33): each run its own curve, never two runs pooled in one;
the report and figures go to --out, never into a trainer run's directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import figures.extrapolation as extrapolation
import figures.gold_proxy_vs_kl as gold_proxy_vs_kl
import figures.proxy_vs_gold as proxy_vs_gold
from figures.data import load_inputs, main_slice
from overopt.cli import main

REAL = Path(__file__).resolve().parent / "fixtures_trl" / "trl116"
LENGTH = "completions/mean_length"
RUNS = ("grpo_s1", "grpo_s2", "rloo_s1")


def logged(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d, gold, proxy) of one run straight from its trainer_state.json, sorted by KL (an independent read)."""
    hist = json.loads((REAL / name / "checkpoint-50" / "trainer_state.json").read_text())["log_history"]
    rows = [e for e in hist if "kl" in e and "rewards/gold/mean" in e and "train_runtime" not in e]
    kl = np.clip([e["kl"] * e[LENGTH] for e in rows], 0, None)
    gold = np.array([e["rewards/gold/mean"] for e in rows])
    proxy = np.array([e["reward"] for e in rows])
    order = np.argsort(kl, kind="stable")
    return np.sqrt(kl[order]), gold[order], proxy[order]


def drawn(module, data, monkeypatch) -> list:
    """The figure `module.make` draws (its save replaced by one that keeps the figure)."""
    kept = []
    monkeypatch.setattr(module, "save", lambda fig, out, name: kept.append(fig) or [])
    module.make(data, "unused")
    return kept[0]


@pytest.fixture(scope="module")
def data():
    return load_inputs([REAL / n for n in RUNS], {"kl_per_token": LENGTH}, Path("unused"))


def marker_lines(ax) -> list:
    return [ln for ln in ax.get_lines() if ln.get_marker() == "o"]


def test_each_run_is_its_own_curve_in_gold_vs_kl(data, monkeypatch):
    fig = drawn(gold_proxy_vs_kl, data, monkeypatch)
    ax = fig.axes[0]
    lines = marker_lines(ax)
    assert len(lines) == 3  # one a run: pooling two runs would leave fewer, with means over runs
    for name in RUNS:
        d, gold, _ = logged(name)
        match = [ln for ln in lines if len(ln.get_xdata()) == len(d) and np.allclose(ln.get_ydata(), gold)]
        assert len(match) == 1 and np.allclose(match[0].get_xdata(), d), name
    from matplotlib.legend import Legend

    labels = {t.get_text() for leg in fig.findobj(Legend) for t in leg.get_texts()}
    assert set(RUNS) <= labels  # the legend names each run
    assert ax.get_title() == "GRPO/RLOO"


def test_proxy_and_extrapolation_split_by_run(data, monkeypatch):
    fig = drawn(proxy_vs_gold, data, monkeypatch)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "o"]
    assert len(lines) == 3
    for name in RUNS:
        _, gold, proxy = logged(name)
        assert any(np.allclose(ln.get_xdata(), gold) and np.allclose(ln.get_ydata(), proxy) for ln in lines), name
    fig = drawn(extrapolation, data, monkeypatch)
    dashed = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 3  # one law a run, each fitted to that run's low-KL points


def test_main_slice_keeps_trainer_runs_of_any_algo_and_ppo_otherwise(data):
    assert len(main_slice(data.points)) == len(data.points)  # GRPO and RLOO runs are not PPO, and are kept
    table = data.points.drop(columns="run")
    table = table.assign(algo=table["algo"].where(table["algo"] != "rloo", "ppo"))
    assert set(main_slice(table)["algo"]) == {"ppo"}  # with PPO rows and no runs, the main slice is PPO's


def test_figures_of_runs_write_into_out_only(tmp_path, capsys):
    runs = tmp_path / "runs"
    for name in RUNS:
        shutil.copytree(REAL / name, runs / name)
    before = sorted(p.relative_to(runs) for p in runs.rglob("*"))
    figs = tmp_path / "figs"
    code = main(["figures", str(runs), "--kl-per-token", LENGTH, "--out", str(figs), "--only", "gold_proxy_vs_kl"])
    out = capsys.readouterr().out
    assert code == 0 and f"report: {figs / 'report.md'}" in out and (figs / "gold_proxy_vs_kl.png").is_file()
    assert sorted(p.relative_to(runs) for p in runs.rglob("*")) == before  # nothing written into the runs


def test_runs_pooled_on_request_are_drawn_one_curve_an_optimizer(monkeypatch):
    pooled = load_inputs([REAL / n for n in RUNS], {"kl_per_token": LENGTH, "pool_runs": "seeds"}, Path("unused"))
    assert "run" not in pooled.points.columns and len(main_slice(pooled.points)) == len(pooled.points)
    fig = drawn(gold_proxy_vs_kl, pooled, monkeypatch)
    lines = marker_lines(fig.axes[0])
    assert len(lines) == 2  # GRPO's two seeds pooled (as asked) into one curve, RLOO's its own
    (rloo,) = [ln for ln in lines if len(ln.get_xdata()) == 50 and np.allclose(ln.get_ydata(), logged("rloo_s1")[1])]
    d1, g1, _ = logged("grpo_s1")
    grpo = next(ln for ln in lines if ln is not rloo)
    assert len(grpo.get_xdata()) == len(d1)  # one point a step: the mean over the two seeds
