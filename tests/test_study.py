"""End to end: `overopt study` on a reduced preset (seconds), resume, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from micro import copy_study, study_argv

from overopt.cli import main
from scaling.points import max_rule


@pytest.fixture
def study_dir(micro_study):
    """The session's micro study (read-only: a test that writes to it copies it first)."""
    return micro_study


def test_every_artefact_exists_and_reads(study_dir):
    pts = pd.read_parquet(study_dir / "points.parquet")
    assert set(pts["method"]) == {"bon", "rl"}
    assert {"kl", "gold", "proxy", "rm_params", "data_size", "seed"} <= set(pts.columns)
    bon = pts[pts.method == "bon"]
    assert bon["n"].max() == 64 and set(bon["objective"]) >= {"single", "mean", "min", "median", "uwo"}
    assert set(pts[pts.method == "rl"]["kl_coef"]) == {0.0, 0.1}
    # every RL evaluation carries its own standard error (over the evaluation batch); BoN points do not
    rl_se = pts.loc[pts.method == "rl", "gold_eval_se"].to_numpy(float)
    assert np.all(np.isfinite(rl_se)) and np.all(rl_se >= 0)
    assert pts.loc[pts.method == "bon", "gold_eval_se"].isna().all()
    fits = json.loads((study_dir / "fits.json").read_text())
    assert fits["fits"] and all("alpha" in r and "r2" in r for r in fits["fits"])
    prox = pd.read_parquet(study_dir / "proxies.parquet")
    assert len(prox) == 2 * 2 * 2  # 2 sizes x (full data + one data size) x 2 seeds
    checks = json.loads((study_dir / "criteria.json").read_text())["checks"]
    assert {"bon_r2", "rl_r2", "bon_overopt", "alpha_bon_slope", "rl_reaches_bon_kl"} <= {c["check"] for c in checks}
    assert all(c["passed"] in (True, False, None) for c in checks)
    report = (study_dir / "report.md").read_text()
    assert "## Gao et al.'s qualitative results" in report and "| bon_r2 |" in report
    assert list((study_dir / "figures").glob("*.png")) and list((study_dir / "figures").glob("*.pdf"))
    info = json.loads((study_dir / "study.json").read_text())
    assert info["preset"] == "tiny-flattery" and info["runs"]
    # the selection rules (issue 24): every proxy x objective x rule has points, a law on kl_exact and predictions
    sel = json.loads((study_dir / "selection.json").read_text())
    fitted = {(f["rm_params"], f["objective"], f["rule"]) for f in sel["fits"] if f.get("alpha") is not None}
    rules = pts[pts["rule"].notna() & (pts["rule"] != "max")]
    assert {(r, o, u) for r, o, u in rules[["rm_params", "objective", "rule"]].itertuples(index=False)} <= fitted
    assert (rules["kl"] == rules["kl_exact"]).all() and rules.groupby(["rm_params", "data_size"]).ngroups == 4
    assert set(rules["policy_params"]) == set(bon["policy_params"])  # a policy-size sweep keeps rule curves apart
    best = pd.DataFrame(sel["best_n"])
    assert set(best["predictor"]) == {"hedge", "law"} and (best["regret"] > -1e-9).all()
    assert (study_dir / "figures" / "rules.png").exists() and (study_dir / "figures" / "best_n.png").exists()
    assert "## Selection rules (KL: kl_exact)" in report


def test_second_run_skips_everything_and_gives_same_numbers(study_dir, tmp_path):
    d = copy_study(study_dir, tmp_path / "s")
    done = {p: p.stat().st_mtime_ns for p in (d / "runs").glob("*/DONE")}
    before = pd.read_parquet(d / "points.parquet")
    assert main(study_argv(d, "--resume")) == 0
    assert {p: p.stat().st_mtime_ns for p in (d / "runs").glob("*/DONE")} == done
    pd.testing.assert_frame_equal(pd.read_parquet(d / "points.parquet"), before)


def test_same_config_and_seed_give_same_numbers(study_dir, tmp_path):
    out = tmp_path / "again"
    assert main(study_argv(out, "--set", "figures=false")) == 0  # figures are not part of any stage's id
    a = pd.read_parquet(study_dir / "points.parquet")
    b = pd.read_parquet(out / "points.parquet")
    cols = ["method", "objective", "rm_params", "data_size", "n", "step", "kl_coef", "kl", "gold", "proxy"]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True))
    assert not (out / "figures").exists()


def test_per_prompt_bon_rows_and_replicate_column(study_dir):
    pts = pd.read_parquet(study_dir / "points.parquet")
    pp = pd.read_parquet(study_dir / "bon_prompts.parquet")
    assert (pts["replicate"] == 0).all() and (pp["replicate"] == 0).all()
    # the mean over prompts of the per-prompt estimates is the points table's gold, at every n
    bon = max_rule(pts[(pts.method == "bon") & (pts.objective == "single")])  # the selection rules have no prompt rows
    assert set(pts["rule"].fillna("max")) == {"max", "soft", "poisson", "regularized"}
    mean = pp[pp.objective == "single"].groupby(["rm_params", "data_size", "n"], dropna=False)["gold"].mean()
    ref = bon.set_index(["rm_params", "data_size", "n"])["gold"]
    np.testing.assert_allclose(mean.loc[ref.index].to_numpy(), ref.to_numpy(), rtol=1e-12, atol=1e-12)
    assert pp["prompt"].nunique() == 4  # bon.n_prompts
    fits = json.loads((study_dir / "fits.json").read_text())["fits"]
    assert all(r["replicate"] == 0 for r in fits)


def test_overopt_fit_on_a_study_resamples_prompts_like_fits_json(study_dir, tmp_path):
    out = tmp_path / "fit.json"
    assert main(["fit", str(study_dir), "--n-boot", "50", "--json", str(out)]) == 0
    got = [
        r
        for r in json.loads(out.read_text())["fits"]
        if r["method"] == "bon" and r["objective"] == "single" and r.get("rule") == "max"
    ]
    ref = {
        (r["rm_params"], r["data_size"]): r
        for r in json.loads((study_dir / "fits.json").read_text())["fits"]
        if r["method"] == "bon" and r.get("rule") == "max"
    }
    assert got and all(r["interval"] == "prompts" for r in got)
    for r in got:  # the same estimate as the study's own fits (its intervals use another n_boot)
        assert r["alpha"] == pytest.approx(ref[(r["rm_params"], r["data_size"])]["alpha"], rel=1e-12)
    # --resample points keeps the mean curve: the old, too narrow intervals, on request only
    assert main(["fit", str(study_dir), "--n-boot", "50", "--resample", "points", "--json", str(out)]) == 0
    assert {r["interval"] for r in json.loads(out.read_text())["fits"] if r["method"] == "bon"} == {"points"}


def test_replicate_derives_every_seed(tmp_path, capsys):
    import dataclasses

    from study.config import SEED_FIELDS, replicate_config
    from study.presets import tiny

    def seeds(cfg):
        out = {}
        for where, _ in SEED_FIELDS:
            v = cfg
            for part in where.split("."):
                v = getattr(v, part)
            out[where] = v
        return out

    base = tiny()
    assert replicate_config(base) == base  # K = 0 is the preset as it is
    one, two = (replicate_config(dataclasses.replace(base, replicate=k)) for k in (1, 2))
    s0, s1, s2 = seeds(base), seeds(one), seeds(two)
    for where in s0:  # every seed moves, differently per replicate, and deterministically
        assert s1[where] != s0[where] and s2[where] != s1[where], where
    assert seeds(replicate_config(dataclasses.replace(base, replicate=1))) == s1
    flat = [s for v in s1.values() for s in (v if isinstance(v, tuple) else (v,))]
    assert len(set(flat)) == len(flat)  # independent streams per field
    # the CLI flag reaches the config; a negative K is bad input
    code, out, err = _cli(capsys, "study", "--preset", "tiny", "--replicate", "2", "--print-config")
    assert code == 0 and json.loads(out)["replicate"] == 2
    want = seeds(replicate_config(dataclasses.replace(base, replicate=2)))["world.seed"]
    assert json.loads(out)["world"]["seed"] == want
    code, _, err = _cli(capsys, "study", "--preset", "tiny", "--replicate", "-1", "--out", str(tmp_path / "x"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def _cli(capsys, *args):
    """`overopt ARGS` in process: (exit code, stdout, stderr). The installed entry point's own smoke tests
    are in test_bad_inputs (test_entry_point_subprocess)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--preset", "huge"], "unknown preset"),
        (["--set", "ladder.nope=3"], "unknown config key 'ladder.nope'"),
        (["--set", "bon.pool_size=big"], "bon.pool_size"),
        (["--set", "labels.flip_frac=0.9"], "flip_frac"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, extra, needle):
    out = tmp_path / "o"
    code, _, err = _cli(capsys, "study", "--out", str(out), *extra)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert not out.exists()


def test_foreign_out_dir_is_refused(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    code, _, err = _cli(capsys, "study", "--out", str(tmp_path))
    assert code == 2 and "holds no overopt study" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    code, _, err = _cli(capsys, "study", "--out", str(f))
    assert code == 2 and "not a directory" in err


def test_print_config_needs_no_out_and_running_does(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(capsys, "study", "--preset", "tiny", "--print-config", "--set", "bon.pool_size=8")
    assert code == 0, err
    cfg = json.loads(out)
    assert cfg["preset"] == "tiny" and cfg["bon"]["pool_size"] == 8
    code, _, err = _cli(capsys, "study", "--preset", "tiny")
    assert code == 2
    msg = "overopt: error: study: --out DIR is required (only --print-config runs without it)"
    assert err.strip().splitlines() == [msg]
    assert list(tmp_path.iterdir()) == []


def test_data_size_equal_to_the_training_split_is_not_trained_twice():
    import dataclasses
    from types import SimpleNamespace

    from study.config import n_train_comparisons
    from study.pipeline import Study
    from study.presets import small

    cfg = small()  # 20,000 comparisons, 10% validation: the full-data proxies train on 18,000
    assert n_train_comparisons(cfg) == 18000 and 18000 in cfg.ladder.data_sizes

    def jobs(c):
        return [(s.name, d) for s, d in Study.proxy_jobs(SimpleNamespace(cfg=c))]

    pairs = jobs(cfg)
    assert len(pairs) == len(set(pairs))
    assert pairs.count(("rm-s", None)) == 1 and ("rm-s", 18000) not in pairs
    assert [d for n, d in pairs if n == "rm-l"] == [None, 2000, 6000]
    assert ("rm-xs", 2000) not in pairs  # not in data_sweep_sizes
    # a labels count whose training split is not a listed data size keeps every data size
    odd = dataclasses.replace(cfg, labels=dataclasses.replace(cfg.labels, n_comparisons=30000))
    assert [d for n, d in jobs(odd) if n == "rm-l"] == [None, 2000, 6000, 18000]


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_every_preset_resolves_and_validates(preset):
    from study.config import n_train_comparisons
    from study.presets import resolve

    cfg = resolve(preset)
    assert cfg.preset == preset
    assert all(d <= n_train_comparisons(cfg) for d in cfg.ladder.data_sizes)


def test_summary_table_names_varying_columns_and_marks_far_peaks():
    from study.cli import summary_lines

    rows = [
        dict(
            method="bon",
            rm_params=425,
            data_size=45000,
            alpha=0.48,
            beta=0.22,
            r2=0.9,
            d_peak=1.1,
            gold_peak=0.27,
            d_max=2.9,
            n_points=28,
        ),
        dict(
            method="bon",
            rm_params=425,
            data_size=5000,
            alpha=0.41,
            beta=0.22,
            r2=0.8,
            d_peak=0.95,
            gold_peak=0.2,
            d_max=2.9,
            n_points=28,
        ),
        dict(
            method="rl",
            rm_params=425,
            data_size=45000,
            kl_coef=0.0,
            alpha=0.3,
            beta=0.004,
            r2=0.94,
            d_peak=6.1e33,
            gold_peak=2.4e31,
            d_max=2.0,
            n_points=40,
        ),
        dict(
            method="rl",
            rm_params=425,
            data_size=45000,
            kl_coef=0.05,
            alpha=0.3,
            beta=-0.01,
            r2=0.9,
            d_peak=None,
            gold_peak=None,
            d_max=2.0,
            n_points=40,
        ),
    ]
    head, *lines = summary_lines(rows, {425: "rm-2xs"})
    assert head.split()[:5] == ["method", "rm_name", "rm_params", "data_size", "kl_coef"]
    assert lines[1].split()[3:5] == ["5000", "-"]  # BoN rows have no kl_coef
    assert lines[2].split()[4] == "0" and lines[2].split()[8:10] == ["beyond", "beyond"]
    assert lines[0].split()[8:10] == ["1.10", "0.270"]  # a peak inside the range is printed
    assert lines[3].split()[8:10] == ["-", "-"]  # no peak (beta <= 0)
    # nothing varies: no extra columns
    assert summary_lines(rows[:1], {})[0].split()[3] == "alpha"
