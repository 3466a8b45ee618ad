"""The optimizer comparison (issue 35): `figures.optimizers` (one axis, one proxy, every optimizer) and the
report's section (`figures.report_optimizers`): the variants it picks, the over-optimization call against
curves built to peak or not, and the coefficient table keeping algos apart."""

import numpy as np
import pandas as pd
import pytest

from figures.data import FigureData
from figures.optimizers import make, variants
from figures.report_optimizers import optimizer_blocks, overoptimizes
from scaling.fitting import fit_table


def _curve(method, peaks, rm=2e6, **cols):
    rows = []
    for step in range(10):
        d = 0.4 * step
        gold = d * (1.0 - 0.5 * d) if peaks else 0.5 * d
        row = {"method": method, "kl": d * d, "gold": gold, "step": step, "seed": 0, "rm_params": rm}
        rows.append({**row, "policy_params": 7e5, "gold_eval_se": 0.01, **cols})
    return rows


def points():
    rows = [r | {"n": 2**i, "step": None} for i, r in enumerate(_curve("bon", False))]
    rows += _curve("rl", True, kl_coef=0.0)  # ppo without an algo column value
    rows += _curve("rl", True, rm=1e6, kl_coef=0.0)  # a smaller proxy: not drawn
    rows += _curve("rl", False, kl_coef=0.0, algo="ppo", objective="min", ensemble_size=3)
    rows += _curve("rl", True, kl_coef=0.04, algo="grpo")
    rows += _curve("rl", False, kl_coef=0.0, algo="ppo_constrained", constraint_threshold=1.0)
    for b in (0.1, 0.5):
        rows += [
            r | {"train_loss": 1.0 / (1 + r["step"])}
            for r in _curve("rl", b == 0.1, rm=None, kl_coef=b, beta_dpo=b, algo="dpo")
        ]
    return pd.DataFrame(rows)


def test_variants_and_overoptimization_call():
    proxy, curves = variants(points())
    assert proxy == 2e6
    labels = [label for label, _ in curves]
    assert labels == ["best-of-n", "grpo", "ppo", "ppo (min)", "ppo_constrained", "dpo"]
    got = {label: overoptimizes(rows)[0] for label, rows in curves if label != "dpo"}
    assert got == {"best-of-n": False, "grpo": True, "ppo": True, "ppo (min)": False, "ppo_constrained": False}
    falls, peak, last = overoptimizes(dict(curves)["grpo"])
    assert peak == max(d * (1 - 0.5 * d) for d in 0.4 * np.arange(10)) and last < peak


def test_figure_renders_and_section_keeps_algos_apart(tmp_path):
    pts = points()
    fits = fit_table(pts, n_boot=0)
    data = FigureData(points=pts, fits=fits)
    files = make(data, tmp_path)
    assert [p.suffix for p in files] == [".png", ".pdf"] and files[0].stat().st_size > 5000
    blocks = optimizer_blocks(data)
    text = " ".join(b[1] for b in blocks if b[0] == "p")
    assert "KL is not comparable across optimizers as a cost" in text
    over = blocks[2]
    assert over[0] == "table" and [r[:3] for r in over[2] if r[0] == "dpo"] == [
        ["dpo", "beta 0.1", "yes"],
        ["dpo", "beta 0.5", "no"],
    ]
    coef = blocks[-1][2]
    names = {(r[0], r[1]) for r in coef}
    assert {
        ("ppo", "single"),
        ("ppo", "min"),
        ("grpo", "single"),
        ("ppo_constrained", "single"),
        ("dpo", "single"),
    } <= names
    assert ("best-of-n", "single") in names
    assert len(
        {(f.get("algo"), f.get("objective"), f.get("rm_params"), f.get("kl_coef")) for f in fits["fits"]}
    ) == len(fits["fits"])


def test_curve_law_recovers_known_coefficients():
    from figures.report_optimizers import curve_law

    d = np.linspace(0.2, 3.0, 12)
    rows = pd.DataFrame({"kl": d * d, "gold": d * (0.8 - 0.3 * np.log(d)), "step": np.arange(12), "seed": 0})
    law = curve_law(rows, "rl")
    assert law["alpha"] == pytest.approx(0.8, abs=1e-6) and law["beta"] == pytest.approx(0.3, abs=1e-6)
    assert law["r2"] == pytest.approx(1.0, abs=1e-9)
    # a curve with two points past KL 0 (a short run) has no law: {} (was a UsageError that ended the study)
    assert curve_law(rows.iloc[[0, 1, 2]].assign(kl=[0.0, 0.5, 1.0]), "rl") == {}


def test_direct_curves_compare_laws_by_held_out_error_and_correlate_loss_with_gold():
    from figures.report_optimizers import direct_blocks

    _, curves = variants(points())
    [_, (kind, head, table)] = direct_blocks(curves)
    assert kind == "table" and "held-out RMSE: RL law" in head
    rows = {r[1]: r for r in table}
    peaked, straight = rows["0.1"], rows["0.5"]  # gold d (1 - d/2) (the BoN form: it wins held out), gold d/2
    assert float(peaked[3]) < 1e-6 < float(peaked[2])
    # training loss falls at every step: perfectly anti-correlated with a rising gold, not with a peaked one
    assert float(straight[4]) == -1.0 and float(peaked[4]) > -1.0


def test_constrained_ppo_at_two_proxy_points_gives_two_curves():
    pts = pd.concat(
        [points(), pd.DataFrame(_curve("rl", True, kl_coef=0.0, algo="ppo_constrained", constraint_threshold=2.0))]
    )
    labels = [label for label, _ in variants(pts)[1]]
    assert "ppo_constrained (proxy <= 1)" in labels and "ppo_constrained (proxy <= 2)" in labels
    assert "ppo_constrained" not in labels


def test_finish_fits_rl_ensemble_objectives_apart():
    from study.finish import rl_objective_fits

    pts = points()
    fits = rl_objective_fits(pts)
    assert [(f["method"], f["algo"], f["objective"], f["law"]) for f in fits] == [("rl", "ppo", "min", "rl")]
    assert fits[0]["alpha"] == pytest.approx(0.5, abs=0.05) and fits[0]["n_points"] == 9  # gold d/2, d > 0
    assert rl_objective_fits(pts.drop(columns="objective")) == []
