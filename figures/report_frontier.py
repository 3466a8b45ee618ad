"""The report's "Constrained PPO against the KL-penalty sweep" (issue 35, item 5): each setting's end point and
peak (figure `frontier`), each family's best gold and its KL, and where constrained PPO's end points lie against
the penalty sweep's frontier at the same KL (`figures.frontier.compare`)."""

from __future__ import annotations

import math

from figures.data import FigureData
from figures.frontier import CONSTRAINED, LEVEL, PENALTY, best, compare, frontier_data, knob_table
from scaling.fmt import fmt_params


def _g(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


def _ci(m, lo, hi) -> str:
    return _g(m) if math.isnan(lo) else f"{_g(m)} [{_g(lo)}, {_g(hi)}]"


def frontier_blocks(data: FigureData) -> list[tuple]:
    """Blocks (see figures.report.build); [] without both families against one proxy."""
    fr = frontier_data(data.points)
    if fr is None:
        return []
    table = knob_table(fr.ends)
    pct = f"{LEVEL:.0%}"
    blocks: list[tuple] = [
        ("h2", "Constrained PPO against the KL-penalty sweep"),
        (
            "p",
            "PPO at several KL coefficients and constrained PPO at several proxy points (its smallest KL coefficient)"
            + (f", against one proxy ({fmt_params(fr.proxy)} parameters)" if fr.proxy is not None else "")
            + f" (figure `frontier`). Each setting's end point is its last evaluation, mean over seeds ({pct} t"
            " interval over seeds); its peak is the largest gold along the run, which only an oracle that sees gold"
            " could stop at.",
        ),
    ]
    head = ["optimizer", "knob", "seeds", "KL at end", "proxy at end", "gold at end", "peak gold", "KL at peak"]
    rows = []
    for _, r in table.iterrows():
        name, knob = ("PPO", "kl_coef") if r["family"] == PENALTY else ("constrained PPO", "proxy <=")
        rows.append(
            [
                name,
                f"{knob} {r['knob']:g}",
                str(int(r["seeds"])),
                _g(r["kl"]),
                _g(r["proxy"]),
                _ci(r["gold"], r["gold_lo"], r["gold_hi"]),
                _ci(r["gold_peak"], r["peak_lo"], r["peak_hi"]),
                _g(r["kl_peak"]),
            ]
        )
    blocks.append(("table", head, rows))
    lines = []
    for family, name, knob in ((PENALTY, "PPO", "kl_coef"), (CONSTRAINED, "constrained PPO", "proxy point")):
        end, peak = best(table, family), best(table, family, "gold_peak")
        lines.append(
            f"{name}: best gold at the end {_ci(end['gold'], end['gold_lo'], end['gold_hi'])} at KL {_g(end['kl'])}"
            f" ({knob} {end['knob']:g}); best peak {_ci(peak['gold_peak'], peak['peak_lo'], peak['peak_hi'])} at KL"
            f" {_g(peak['kl_peak'])} ({knob} {peak['knob']:g})."
        )
    blocks.append(("p", " ".join(lines)))
    points, overall = compare(fr.ends)
    head = ["proxy point", "KL at end", "gold at end", "PPO frontier's gold at that KL", "difference", "lies"]
    rows = []
    for p in points:
        if not p["in_range"]:
            rows.append([f"{p['knob']:g}", _g(p["kl"]), _g(p["gold"]), "outside the penalty sweep's KL", "-", "-"])
            continue
        diff = _ci(p["delta"], p["low"], p["high"])
        rows.append([f"{p['knob']:g}", _g(p["kl"]), _g(p["gold"]), _g(p["penalty_gold"]), diff, p["verdict"]])
    blocks += [
        (
            "p",
            "Constrained PPO's end points against the penalty sweep's frontier (its end points, linear in sqrt(KL)"
            f" between them), seed by seed; the difference's {pct} t interval over seeds; 'above' or 'below' when it"
            " excludes 0, 'at' when it holds 0, '-' with one seed:",
        ),
        ("table", head, rows),
    ]
    if overall["n_points"]:
        say = {"above": "lies above", "below": "lies below", "at": "is not told apart from", "-": "(one seed) vs"}
        blocks.append(
            (
                "p",
                f"Over the {overall['n_points']} proxy point(s) inside the penalty sweep's KL range, constrained PPO's"
                f" frontier {say[overall['verdict']]} the penalty sweep's: mean difference in gold"
                f" {_ci(overall['delta'], overall['low'], overall['high'])} over {overall['seeds']} seed(s).",
            )
        )
    else:
        none = "No proxy point ended inside the penalty sweep's KL range: the frontiers are not compared."
        blocks.append(("p", none))
    return blocks
