"""Report: links only files that exist, self-contained HTML, setup and fit table, and each warning fires on the
case it is for and stays quiet otherwise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from demo_data import write_demo

from figures import FIGURES, render_all
from figures.data import load_data
from figures.report import (
    chance_proxies,
    no_visible_peak,
    poor_fits,
    proxy_gold_divergence,
    write_report,
)

RENDERED = ["proxy_vs_gold", "kl_penalty"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = write_demo(tmp_path_factory.mktemp("study"))
    fits = json.loads((root / "fits.json").read_text())
    fits["fits"][0]["r2"] = 0.5  # a poor BoN fit
    fits["fits"][1]["converged"] = False
    (root / "fits.json").write_text(json.dumps(fits))
    figdir = root / "figures"
    render_all(load_data(root), figdir, only=RENDERED)
    (figdir / "kl_penalty.pdf").unlink()  # a PNG without its PDF: the PDF must not be linked
    md = write_report(root, figdir)
    return root, md.read_text(), (root / "report.html").read_text()


def test_markdown_links_only_existing_files(report):
    root, md, _ = report
    links = re.findall(r"\]\(([^)]+)\)", md)
    assert links, "no links at all"
    for link in links:
        assert (root / link).is_file(), link
    assert "figures/kl_penalty.pdf" not in md and "figures/proxy_vs_gold.pdf" in md


def test_html_is_self_contained_and_links_only_existing_files(report):
    root, _, html = report
    srcs = re.findall(r'src="([^"]+)"', html)
    assert len(srcs) == len(RENDERED) and all(s.startswith("data:image/png;base64,") for s in srcs)
    for href in re.findall(r'href="([^"]+)"', html):
        assert (root / href).is_file(), href
    assert "<style>" in html and "<link" not in html


def test_every_figure_is_shown_or_listed_as_skipped(report):
    _, md, html = report
    for name in FIGURES:
        if name in RENDERED:
            assert f"figures/{name}.png" in md
        else:
            assert f"- {name} (" in md and "not rendered" in md
    assert html.count("<figure>") == len(RENDERED)


def test_setup_fit_table_and_warnings(report):
    root, md, _ = report
    assert "| preset | demo |" in md
    n_fits = len(json.loads((root / "fits.json").read_text())["fits"])
    fit_section = md.split("## Fitted laws")[1].split("##")[0]
    assert fit_section.count("\n| bon |") + fit_section.count("\n| rl |") == n_fits
    warnings = md.split("## Warnings")[1].split("##")[0]
    for text in ("poor fit", "did not converge", "proxy at chance", "reward hacking", "no visible peak"):
        assert text in warnings, text


def test_skip_reason_from_manifest_is_listed(tmp_path):
    root = tmp_path
    pd.DataFrame(dict(method="bon", kl=[0.0, 0.3, 0.8], gold=[0.0, 0.2, 0.1], n=[1, 2, 4])).to_parquet(
        root / "points.parquet"
    )
    (root / "fits.json").write_text(json.dumps({"fits": [], "scaling": []}))
    render_all(load_data(root), root / "figures", only=["kl_penalty"])
    md = write_report(root, root / "figures").read_text()
    assert "- kl_penalty (KL penalty): no KL-penalty variation" in md
    assert "![" not in md


def _rl_curve(gold, proxy):
    n = len(gold)
    return pd.DataFrame(
        dict(
            method="rl", rm_params=1e6, kl_coef=0.0, step=np.arange(n), kl=np.linspace(0, 4, n), gold=gold, proxy=proxy
        )
    )


def test_divergence_alert():
    rising = np.linspace(0, 2, 6)
    hacked = _rl_curve([0, 0.5, 0.8, 0.6, 0.3, 0.1], rising)
    assert len(proxy_gold_divergence(hacked)) == 1
    # the proxy falls with gold: no reward hacking (the proxy is not fooled)
    assert proxy_gold_divergence(_rl_curve([0, 0.5, 0.8, 0.6, 0.3, 0.1], [0, 1, 2, 1.5, 1.0, 0.5])) == []
    # gold still rising, or a dip within noise (< 10% of its range): no alert
    assert proxy_gold_divergence(_rl_curve([0, 0.2, 0.4, 0.6, 0.8, 1.0], rising)) == []
    assert proxy_gold_divergence(_rl_curve([0, 0.4, 0.8, 1.0, 0.98, 0.97], rising)) == []
    # BoN curves are not RL
    assert proxy_gold_divergence(hacked.assign(method="bon")) == []


def test_no_visible_peak():
    monotone = _rl_curve([0, 0.2, 0.4, 0.6], [0, 1, 2, 3])
    peaked = _rl_curve([0, 0.5, 0.4, 0.3], [0, 1, 2, 3])
    assert len(no_visible_peak(monotone, [])) == 1
    assert no_visible_peak(peaked, []) == []
    assert len(no_visible_peak(peaked, [dict(method="rl", beta=-0.1)])) == 1
    assert no_visible_peak(peaked, [dict(method="rl", beta=0.1)]) == []


def test_poor_fit_thresholds():
    rows = [
        dict(method="bon", law="bon", r2=0.85, converged=True),  # below 0.9: poor for BoN
        dict(method="rl", law="rl", r2=0.85, converged=True),  # above 0.8: fine for RL
        dict(method="rl", law="rl", r2=0.79, converged=True),
        dict(method="rl", law="rl", r2=0.99, converged=False, message="singular"),
    ]
    out = poor_fits(rows)
    assert len(out) == 3 and "bon" in out[0] and "0.79" in out[1] and "singular" in out[2]


def test_chance_proxies():
    prox = pd.DataFrame(dict(rm_name=["a", "b"], rm_params=[1e5, 1e6], val_acc=[0.54, 0.55], seed=[0, 0]))
    out = chance_proxies(prox)
    assert len(out) == 1 and out[0].startswith("proxy at chance: a")
    assert chance_proxies(None) == []


def test_report_without_figures_dir(tmp_path):
    root = write_demo(tmp_path / "s")
    md = write_report(root).read_text()
    assert "![" not in md and md.count("not rendered") == len(FIGURES)
    assert Path(root / "report.html").read_text().count("<figure>") == 0


def test_replicate_spread_table(tmp_path):
    root = write_demo(tmp_path / "s")
    fits = json.loads((root / "fits.json").read_text())
    fits["replicates"] = [
        {
            "method": "bon",
            "rm_params": 1000,
            "coef": "alpha",
            "k": 2,
            "mean": 0.3,
            "sd": 0.1,
            "min": 0.2,
            "max": 0.4,
            "values": {"0": 0.2, "1": 0.4},
            "objective": "single",
        }
    ]
    (root / "fits.json").write_text(json.dumps(fits))
    md = write_report(root, root / "figures").read_text()
    block = md.split("## Across replicates", 1)[1]
    header = next(line for line in block.splitlines() if line.startswith("| "))
    assert header.startswith("| method | rm_params | coef | k | mean | sd | min | max | values |")
    assert "| K0 0.2, K1 0.4 |" in block
