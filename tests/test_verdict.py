"""verdict.json (criteria.verdict) on synthetic replicates (tests/verdict_world.py): its shape, held-out
replicates apart from calibration ones, each claim passing on the ideal world and failing where the world
breaks it, the competence floor, the registration's sha256, `overopt fit --verdict`, the report's section."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from verdict_world import world

from criteria.registered import PATH, load
from criteria.verdict import verdict
from figures.report_verdict import verdict_blocks
from overopt.cli import main


def by_claim(claims):
    return {c["claim"]: c for c in claims}


@pytest.fixture(scope="module")
def ideal():
    pts, prox, fits = world(rl_kl_max=10.0, rl_steps=61, kl_coefs=(0.0, 0.1))
    return pts, prox, fits


def test_shape_and_held_out(ideal):
    pts, prox, fits = ideal
    v = verdict(pts, fits, None, prox, calibration=(0, 1))
    assert v["criteria_sha256"] == hashlib.sha256(PATH.read_bytes()).hexdigest()
    assert v["criteria_version"] == load().version
    assert v["replicates"] == [0, 1, 2] and v["calibration_replicates"] == [0, 1]
    assert v["held_out_replicates"] == [2] and v["primary"] == "held_out"
    assert v["verdicts"]["held_out"]["replicates_used"] == [2]
    assert v["claims"] == v["verdicts"]["held_out"]["claims"]
    for c in v["claims"]:
        assert set(c) >= {"claim", "test", "statistic", "p", "interval", "replicates_used", "passed", "reason"}
        assert not set(c["replicates_used"]) & {0, 1}  # calibration replicates never counted held out
        assert c["passed"] in (True, False, None)
    json.dumps(v, allow_nan=False)
    one = by_claim(v["claims"])
    assert one["bon_overopt"]["passed"] is None  # one held-out replicate: no between-replicate variance
    assert one["best_gold_order"]["passed"] is True  # Page with one block: the exact permutation test


def test_ideal_world_passes(ideal):
    pts, prox, fits = ideal
    v = verdict(pts, fits, None, prox, calibration=())
    assert v["primary"] == "held_out" and v["verdicts"]["held_out"]["replicates_used"] == [0, 1, 2]  # none calibrated
    c = by_claim(v["claims"])
    for name in (
        "bon_r2", "rl_r2", "rl_advance", "rl_resolved", "bon_overopt", "rl_overopt", "best_gold_order",
        "peak_later", "val_loss", "alpha_bon_slope", "beta_bon_slope", "beta_rl_slope", "alpha_rl_constant",
        "kl_efficiency", "rl_peak_kl_later", "penalty_early_stopping",
    ):  # fmt: skip
        assert c[name]["passed"] is True, (name, c[name]["reason"])
    assert c["best_gold_order"]["test"] == "page_L" and c["alpha_rl_constant"]["test"] == "tost"
    assert c["data_size"]["passed"] is None  # no data-size sweep


def test_reversed_world_fails():
    """Sizes relabelled in reverse: the orderings and slopes fail, alpha_rl still constant."""
    pts, prox, fits = world(rl_kl_max=10.0, rl_steps=61)
    sizes = sorted(pts["rm_params"].unique())
    flip = dict(zip(sizes, sizes[::-1], strict=True))
    pts = pts.assign(rm_params=pts["rm_params"].map(flip))
    prox = prox.assign(rm_params=prox["rm_params"].map(flip))
    for r in fits["fits"] + fits.get("advance", []):
        if r.get("rm_params") is not None:
            r["rm_params"] = flip[r["rm_params"]]
    c = by_claim(verdict(pts, fits, None, prox)["claims"])
    for name in ("best_gold_order", "peak_later", "alpha_bon_slope", "beta_bon_slope", "beta_rl_slope"):
        assert c[name]["passed"] is False, name


def test_flat_tail_does_not_overoptimize():
    """Best-of-n curves that never fall (beta ~ 0): bon_overopt does not pass."""
    pts, prox, fits = world(rl_kl_max=10.0, rl_steps=61)
    bon = pts["method"] == "bon"
    d = np.sqrt(pts.loc[bon, "kl"])
    pts.loc[bon, "gold"] = 0.5 * d + np.random.default_rng(1).normal(0, 0.01, bon.sum())
    c = by_claim(verdict(pts, fits, None, prox)["claims"])
    assert c["bon_overopt"]["passed"] is False


def test_floor_leaves_near_chance_proxies_out():
    pts, prox, fits = world(rl_kl_max=10.0, rl_steps=61, val_acc=[0.5, 0.7, 0.8, 0.9])
    c = by_claim(verdict(pts, fits, None, prox)["claims"])
    assert c["competence_floor"]["below_floor"] == [1e3]
    assert c["competence_floor"]["trend_sizes"] == [1e4, 1e5, 1e6]
    assert c["best_gold_order"]["sizes"] == [1e4, 1e5, 1e6]


def test_penalty_offset_fails():
    """Penalised runs 20% of the curve's range above it: not early stopping."""
    pts, prox, fits = world(rl_kl_max=10.0, rl_steps=61, kl_coefs=(0.0, 0.1))
    pen = (pts["method"] == "rl") & (pts["kl_coef"] == 0.1)
    pts.loc[pen & (pts["kl"] > 0), "gold"] += 0.2 * 0.1
    c = by_claim(verdict(pts, fits, None, prox)["claims"])
    assert c["penalty_early_stopping"]["passed"] is False


def write_study(d, pts, prox, fits=None, calibration=(0, 1)):
    d.mkdir()
    pts.to_parquet(d / "points.parquet")
    prox.to_parquet(d / "proxies.parquet")
    k = int(pts["replicate"].iloc[0])
    (d / "study.json").write_text(json.dumps({"replicate": k, "calibration_replicates": list(calibration)}))
    if fits is not None:
        (d / "fits.json").write_text(json.dumps(fits))


def test_fit_cli_verdict(tmp_path, capsys):
    pts, prox, fits = world(rl_kl_max=10.0, rl_steps=61)
    for k in (0, 1, 2):
        own = {g: [r for r in fits.get(g, []) if r.get("replicate") == k] for g in ("fits", "scaling", "advance")}
        write_study(tmp_path / f"k{k}", pts[pts["replicate"] == k], prox[prox["replicate"] == k], own if k else None)
    out = tmp_path / "v.json"
    args = ["fit", *(str(tmp_path / f"k{k}") for k in (0, 1, 2)), "--n-boot", "0", "--verdict", str(out)]
    assert main(args) == 0
    v = json.loads(out.read_text())
    assert v["replicates"] == [0, 1, 2] and v["held_out_replicates"] == [2]
    assert by_claim(v["verdicts"]["all"]["claims"])["best_gold_order"]["passed"] is True
    capsys.readouterr()
    # bad input: one line, exit 2, nothing written
    out2 = tmp_path / "v2.json"
    assert main(["fit", str(tmp_path / "k0"), str(tmp_path / "k0" / "points.parquet"), "--verdict", str(out2)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no points.parquet" in err and not out2.exists()
    assert main(["fit", str(tmp_path / "k0"), str(tmp_path / "k0"), "--n-boot", "0", "--verdict", str(out2)]) == 2
    err = capsys.readouterr().err
    assert "given twice" in err and len(err.strip().splitlines()) == 1 and not out2.exists()
    shutil.copytree(tmp_path / "k0", tmp_path / "k0-copy")  # two inputs, one replicate
    assert main(["fit", str(tmp_path / "k0"), str(tmp_path / "k0-copy"), "--n-boot", "0", "--verdict", str(out2)]) == 2
    err = capsys.readouterr().err
    assert "replicate 0 is in both" in err and not out2.exists()


def test_report_leads_with_verdict(tmp_path, ideal):
    pts, prox, fits = ideal
    (tmp_path / "verdict.json").write_text(json.dumps(verdict(pts, fits, None, prox, calibration=(0, 1))))
    blocks = verdict_blocks(tmp_path)
    assert blocks[0][0] == "h2" and "Verdict" in blocks[0][1]
    tables = [b for b in blocks if b[0] == "table"]
    assert len(tables) == 2 and tables[0][2][0][0] == "competence_floor"
    assert verdict_blocks(tmp_path / "none") == []


def test_no_replicate_column_is_one_replicate(ideal):
    pts, prox, fits = ideal
    one = pd.DataFrame(pts[pts["replicate"] == 0]).drop(columns="replicate")
    v = verdict(one, fits, None, prox[prox["replicate"] == 0].drop(columns="replicate"))
    assert v["replicates"] == [0]


def test_partial_tables_give_na_not_errors(ideal):
    """Best-of-n only, RL only, one size, no rows: the claims the data cannot decide are n/a."""
    pts, prox, fits = ideal
    for part in (pts[pts.method == "bon"], pts[pts.method == "rl"], pts[pts.rm_params == 1e3], pts.iloc[0:0]):
        v = verdict(part, fits, None, None)
        assert all(c["passed"] in (True, False, None) for c in v["claims"])
    c = by_claim(verdict(pts[pts.method == "bon"], fits, None, None)["claims"])
    assert c["rl_r2"]["passed"] is None and c["alpha_rl_constant"]["passed"] is None
