"""Figures: every figure renders a non-empty PNG and PDF from a synthetic study; missing inputs skip with a
reason; the shared helpers against independent references; `overopt figures` end to end."""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np
import pandas as pd
import pytest
from demo_data import add_constrained, write_demo

from core.errors import UsageError
from figures import FIGURES, figure_module, render_all
from figures.data import (
    FigureData,
    Skip,
    load_data,
    lstsq_fit,
    main_slice,
    methods_in,
    most_overoptimized,
    need_variation,
)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = write_demo(tmp_path_factory.mktemp("study"))
    add_constrained(root)  # figure `frontier`
    return root


@pytest.fixture(scope="module")
def rendered(study):
    out = study / "figures"
    return out, render_all(load_data(study), out)


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_writes_png_and_pdf(rendered, name):
    out, results = rendered
    assert results[name]["skip"] is None, results[name]["skip"]
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000
    assert sorted(results[name]["files"]) == [f"{name}.pdf", f"{name}.png"]
    mod = figure_module(name)
    assert mod.NAME == name and len(mod.CAPTION.splitlines()) == 2
    assert "Gao et al. 2022" in mod.CAPTION


def test_no_temp_files_left(rendered):
    out, _ = rendered
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def minimal_points() -> pd.DataFrame:
    """BoN only, one proxy, gold and kl only: most figures have nothing to draw."""
    ns = [1, 2, 4, 8, 16, 32, 64]
    kl = [math.log(n) - (n - 1) / n for n in ns]
    d = np.sqrt(kl)
    return pd.DataFrame(dict(method="bon", kl=kl, gold=d * (0.8 - 0.3 * d), n=ns, rm_params=1e6))


RENDERS_ANYWAY = {"gold_proxy_vs_kl", "extrapolation"}


@pytest.mark.parametrize("name", [n for n in FIGURES if n not in RENDERS_ANYWAY])
def test_missing_inputs_skip_with_a_reason(tmp_path, name):
    data = FigureData(points=minimal_points())
    with pytest.raises(Skip) as e:
        figure_module(name).make(data, tmp_path)
    assert e.value.reason and "\n" not in e.value.reason
    assert not list(tmp_path.iterdir())


def test_render_all_records_skips_and_removes_stale_files(tmp_path):
    (tmp_path / "kl_penalty.png").write_bytes(b"stale")
    res = render_all(FigureData(points=minimal_points()), tmp_path, only=["kl_penalty", "extrapolation"])
    assert res["kl_penalty"]["skip"] and not (tmp_path / "kl_penalty.png").exists()
    assert res["extrapolation"]["skip"] is None and (tmp_path / "extrapolation.pdf").exists()
    with pytest.raises(UsageError):
        render_all(FigureData(points=minimal_points()), tmp_path, only=["no_such_figure"])


def test_lstsq_fit_matches_scipy_curve_fit():
    from scipy.optimize import curve_fit

    from scaling.laws import bon_law, rl_law

    rng = np.random.default_rng(1)
    d = np.linspace(0.0, 3.0, 25)
    for law, fn in (("bon", bon_law), ("rl", rl_law)):
        y = fn(d, 0.9, 0.35) + rng.normal(0, 0.02, d.size)
        keep = d > 0  # the rl law's slope is infinite at 0: both fits drop it
        ref, _ = curve_fit(lambda x, a, b, f=fn: f(x, a, b), d[keep], y[keep], p0=[0.5, 0.1])
        ours = lstsq_fit(d if law == "rl" else d[keep], y if law == "rl" else y[keep], law)
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-8)


def test_most_overoptimized_matches_brute_force():
    rng = np.random.default_rng(0)
    rows = []
    for rm, kc, seed in itertools.product([1e5, 1e6], [0.0, 0.1], [0, 1]):
        for step in range(6):
            rows.append(
                dict(
                    method="rl",
                    rm_params=rm,
                    kl_coef=kc,
                    seed=seed,
                    step=step,
                    kl=step * (1 + rng.random()),
                    gold=rng.normal(),
                )
            )
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter
    key, run = most_overoptimized(df)
    best, best_drop = None, -np.inf
    for rm, kc, seed in itertools.product([1e5, 1e6], [0.0, 0.1], [0, 1]):
        r = sorted(
            (x for x in rows if (x["rm_params"], x["kl_coef"], x["seed"]) == (rm, kc, seed)), key=lambda x: x["kl"]
        )
        drop = max(x["gold"] for x in r) - r[-1]["gold"]
        if drop > best_drop:
            best, best_drop = (rm, kc, seed), drop
    assert (key["rm_params"], key["kl_coef"], key["seed"]) == best
    assert list(run["kl"]) == sorted(run["kl"]) and len(run) == 6


def test_main_slice_defaults():
    df = pd.DataFrame(
        dict(
            method=["bon", "bon", "rl", "rl", "rl", "bon"],
            data_size=[10, 20, 20, 20, 20, 20],
            kl_coef=[np.nan, np.nan, 0.0, 0.1, 0.0, np.nan],
            objective=["single", "single", "single", "single", "single", "min"],
            kl=0.0,
            gold=0.0,
        )
    )
    out = main_slice(df)
    # largest data size, smallest kl_coef (BoN rows have none), single proxies only
    assert out.index.tolist() == [1, 2, 4]
    assert main_slice(df, keep=("data_size",)).index.tolist() == [0, 1, 2, 4]


def test_need_variation_and_methods_in():
    df = pd.DataFrame(dict(method=["dpo", "rl", "bon", "rl", None], kl_coef=[np.nan, 0.1, np.nan, 0.1, np.nan]))
    with pytest.raises(Skip, match=r"^no KL-penalty variation \(fewer than two kl_coef values\)$"):
        need_variation(df, "kl_coef", "KL-penalty")  # one distinct non-null value
    with pytest.raises(Skip, match="data_size"):
        need_variation(df, "data_size", "data-size")  # column absent
    df.loc[0, "kl_coef"] = 0.0
    need_variation(df, "kl_coef", "KL-penalty")  # two values: no Skip
    assert methods_in(df) == ["bon", "rl", "dpo"]
    assert methods_in(df[df["method"] == "dpo"]) == ["dpo"]
    assert methods_in(df.drop(columns="method")) == []


def test_load_data_errors(tmp_path):
    with pytest.raises(UsageError):
        load_data(tmp_path / "absent")
    pd.DataFrame(dict(method=["bon"], gold=[0.0])).to_parquet(tmp_path / "points.parquet")
    with pytest.raises(UsageError):
        load_data(tmp_path)


def _cli(argv):
    from figures import cli

    p = argparse.ArgumentParser()
    cli.add_arguments(p)
    return cli.run(p.parse_args(argv))


def test_cli_end_to_end(tmp_path, capsys):
    root = write_demo(tmp_path / "study")
    out = tmp_path / "figs"
    assert _cli([str(root), "--out", str(out), "--only", "proxy_vs_gold,kl_penalty"]) == 0
    assert sorted(p.name for p in out.glob("*.p*")) == [
        "kl_penalty.pdf",
        "kl_penalty.png",
        "proxy_vs_gold.pdf",
        "proxy_vs_gold.png",
    ]
    assert (root / "report.md").exists() and (root / "report.html").exists()
    assert "proxy_vs_gold" in capsys.readouterr().out
    with pytest.raises(UsageError):
        _cli([str(root), "--only", "nope"])
    with pytest.raises(UsageError):
        _cli([str(tmp_path / "empty_dir_that_does_not_exist")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError):
        _cli([str(tmp_path / "empty")])


def test_overopt_figures_exit_code_2(tmp_path, capsys):
    cli = pytest.importorskip("overopt.cli")
    try:
        cli.build_parser()
    except ImportError as e:  # another verb's module is broken: not this module's failure
        pytest.skip(f"overopt parser does not build: {e}")
    assert cli.main(["figures", str(tmp_path), "--only", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("overopt: error:") and "\n" not in err


def test_what_was_hacked_plots_components_not_their_standard_errors():
    from figures.what_was_hacked import components

    df = pd.DataFrame(
        {
            "gold": [0.0, 1.0],
            "gold/score": [0.0, 1.0],
            "gold/task": [0.0, 0.5],
            "gold/task_se": [0.1, 0.1],
            "gold/flattery": [0.0, 0.5],
            "gold/flattery_se": [0.1, 0.2],
            "gold/teacher": [0.0, 0.0],
            "gold/echo": [np.nan, np.nan],
        }
    )
    assert components(df) == ["gold/task", "gold/flattery"]
