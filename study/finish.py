"""The one finish pipeline of a study and of a sweep: points -> fits -> criteria -> figures -> report.

`write_results` writes `DIR/points.parquet`, `DIR/proxies.parquet`, `DIR/fits.json` (the laws fitted
to the single-objective points of every group with enough points: one fit per best-of-n selection
rule) and `DIR/criteria.json` (Gao et al.'s qualitative results checked on the proxy ladder, whose
best-of-n rows are the max rule's); `render` draws `DIR/figures/` and writes
`DIR/report.md` and `report.html` from what is stored. `overopt study` and `overopt sweep` call both.
"""

from __future__ import annotations

from pathlib import Path

from core.log import log
from core.store import atomic_write_json, atomic_write_parquet
from criteria import gao_checks
from criteria.common import ADVANCE_FRAC
from criteria.replicates import checks_by_replicate, replicate_verdicts
from criteria.verdict import verdict
from figures import render_all
from figures.data import load_data
from figures.report import write_report
from probes.tables import probes_json
from scaling.fitting import fit_table, fittable
from scaling.points import (
    BON_PROMPTS,
    GROUP_COLS,
    fill_max_rule,
    fill_ppo_algo,
    is_single_objective,
    single_objective,
    swap_bon_rows,
    upgrade_columns,
)
from scaling.replicates import replicate_spread
from scaling.unseen_size import table_records, unseen_size_table
from study.selection import write_selection

BEST_N = "best_n.parquet"  # DIR/best_n.parquet: every select stage's best-n predictions
PROBES = "probes.json"  # DIR/probes.json: every probe stage's table (issue 31)

N_BOOT = 200  # bootstrap resamples of every fit
BOOT_SEED = 0


def write_results(
    out: Path,
    points,
    proxies=None,
    *,
    bon_prompts=None,
    by_extra: tuple[str, ...] = (),
    preset: str | None = None,
    calibration: tuple[int, ...] = (),
    predictions=None,
    probes=None,
) -> dict:
    """Write the points, proxies, fits and criteria of a study or sweep directory.

    Arguments:
      out: the directory. points: the points table (every method and objective). proxies: the proxy
        summary table or None. bon_prompts: the per-prompt best-of-n rows (`bon.estimator.bon_prompt_rows`)
        or None: when given, best-of-n laws are fitted to them (the same estimate as on the mean curve)
        and their intervals resample prompts; written to DIR/bon_prompts.parquet. by_extra: grouping
        columns beyond the standard ones (a sweep's axes that vary), so that points of different
        settings are never pooled in one fit. preset: the preset's name (kept for callers; the
        checks decide what they can judge from the data, e.g. the slopes need 5 proxy sizes).
      calibration: the replicates the preset was calibrated on (marked in criteria_replicates.json).
      predictions: the best-n predictions of the select stages or None (DIR/best_n.parquet); with them, or
        with selection-rule rows in the points, DIR/selection.json (`study.selection.write_selection`).
      probes: the probe stages' rows (`probes.tables`) or None: DIR/probes.json (`probes.tables.probes_json`).
    With several replicates, the checks judge each alone: DIR/criteria_replicates.json holds every
    replicate's checks and, per check, on how many replicates it passes.
    Returns: {"fits": fits.json's content, "checks": criteria.json's list}.
    """
    out = Path(out)
    given = points  # as the stages wrote them (selection.json tells rule rows from best-of-n's by `rule`)
    points = upgrade_columns(points)  # runs written before a column was renamed (kl_est) beside newer ones
    points = fill_max_rule(points)  # best-of-n rows without a rule are "max", as `validate_points` reads them
    points = fill_ppo_algo(points)  # RL rows without an algo (runs written before it) are "ppo", likewise
    atomic_write_parquet(out / "points.parquet", points)
    if proxies is not None:
        atomic_write_parquet(out / "proxies.parquet", proxies)
    single = single_objective(points)
    if bon_prompts is not None:
        atomic_write_parquet(out / BON_PROMPTS, bon_prompts)
        single = single_objective(swap_bon_rows(points, bon_prompts))
    by = None
    if by_extra:
        by = [c for c in GROUP_COLS if c in single.columns] + [c for c in by_extra if c not in GROUP_COLS]
    fit_input, unfitted = fittable(single, by)
    for g in unfitted:
        log(f"not fitted (fewer than 3 points with KL > 0): {g}")
    fits = (
        fit_table(fit_input, by=by, n_boot=N_BOOT, seed=BOOT_SEED, d_cut_frac=ADVANCE_FRAC)
        if len(fit_input)
        else {"fits": [], "scaling": []}
    )
    fits["unfitted"] = unfitted
    objectives = rl_objective_fits(points, by)
    if objectives:
        fits["objectives"] = objectives
    spread = replicate_spread(fits["fits"])
    if spread:
        fits["replicates"] = spread
    atomic_write_json(out / "fits.json", fits)
    checks = gao_checks(points, fits, bon_prompts, proxies)
    atomic_write_json(out / "criteria.json", {"checks": checks})
    unseen = unseen_size_table(points, fits)  # each size predicted from the others (issue 23)
    atomic_write_json(out / "unseen_size.json", {"rows": table_records(unseen)})
    if "replicate" in points.columns and points["replicate"].nunique() > 1:
        by_rep = checks_by_replicate(points, fits, bon_prompts, proxies)
        summary = replicate_verdicts(by_rep, calibration)
        atomic_write_json(
            out / "criteria_replicates.json",
            {
                "calibration": list(calibration),
                "summary": summary,
                "replicates": {str(k): c for k, c in by_rep.items()},
            },
        )
    # the pooled verdict over replicates, held-out ones apart (docs/CRITERIA.md)
    atomic_write_json(out / "verdict.json", verdict(points, fits, bon_prompts, proxies, calibration))
    if predictions is not None:
        atomic_write_parquet(out / BEST_N, predictions)
    write_selection(out, given, predictions, by_extra=by_extra)
    if probes is not None:
        atomic_write_json(out / PROBES, probes_json(probes))
    return {"fits": fits, "checks": checks}


def rl_objective_fits(points, by=None) -> list[dict]:
    """The RL law fitted (no bootstrap) to every RL optimizer's curves against an ensemble objective (issue 35:
    `objective` not single): fits.json's "objectives" rows, carrying algo and objective; the main "fits" keep
    the single-objective points that the criteria read."""
    if "objective" not in points.columns:
        return []
    rows = points[(points["method"] == "rl") & ~is_single_objective(points["objective"])]
    fit_input, _ = fittable(rows, by) if len(rows) else (rows, [])
    return fit_table(fit_input, by=by, n_boot=0)["fits"] if len(fit_input) else []


def render(out: Path) -> None:
    """Draw every figure into DIR/figures and write DIR/report.md and report.html from what DIR holds."""
    out = Path(out)
    data = load_data(out)
    render_all(data, out / "figures", None)
    write_report(out, out / "figures", data=data)
