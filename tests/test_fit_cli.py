"""`overopt fit` end to end: points files, run dirs, a HF trainer_state.json, and every bad input
(exit 2, one stderr line, no traceback, no output file), in process; one good and one bad input through
the installed script."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.store import Run
from overopt.cli import main
from scaling.laws import bon_law, rl_law

OVEROPT = Path(sys.executable).parent / "overopt"


def points(seed=0, n=25):
    """BoN and RL curves for two RM sizes with known coefficients, three seeds each."""
    rng = np.random.default_rng(seed)
    parts = []
    for method, law in (("bon", bon_law), ("rl", rl_law)):
        for size, (a, b) in ((1e5, (0.6, 0.35)), (1e7, (1.1, 0.25))):
            for s in range(3):
                d = rng.uniform(0.1, 4.0, n)
                parts.append(
                    pd.DataFrame(
                        {
                            "method": method,
                            "rm_params": size,
                            "seed": s,
                            "kl": d**2,
                            "gold": law(d, a, b) + rng.normal(0, 0.03, n),
                        }
                    )
                )
    return pd.concat(parts, ignore_index=True)


def test_fit_csv_prints_table_and_writes_json(tmp_path, capsys):
    csv = tmp_path / "points.csv"
    points().to_csv(csv, index=False)
    out = tmp_path / "out" / "fits.json"
    assert main(["fit", str(csv), "--n-boot", "100", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "alpha" in text and "d_peak" in text and "rm_params=1e+05" in text and "coefficient scaling" in text
    assert "interval" in text and "seeds" in text
    result = json.loads(out.read_text())
    assert set(result) == {"fits", "scaling"} and len(result["fits"]) == 4
    for row in result["fits"]:
        truth = {1e5: 0.6, 1e7: 1.1}[row["rm_params"]]
        assert abs(row["alpha"] - truth) < 0.05 and row["alpha_ci"][0] < truth < row["alpha_ci"][1]
        assert row["n_points"] == 75 and row["converged"]
        assert row["interval"] == "seeds" and "t interval over 3 seeds" in row["message"]  # 3 seeds a curve
    assert {(s["method"], s["coef"], s["x"]) for s in result["scaling"]} == {
        (m, c, "rm_params") for m in ("bon", "rl") for c in ("alpha", "beta")
    }


def test_fit_options(tmp_path, capsys):
    pq = tmp_path / "p.parquet"
    points().to_parquet(pq, index=False)
    out = tmp_path / "o.json"
    args = [
        "fit",
        str(pq),
        "--by",
        "method,rm_params",
        "--method",
        "rl",
        "--shared-alpha",
        "--d-cut",
        "1.5",
        "--n-boot",
        "50",
        "--resample",
        "points",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    assert "advance prediction" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert all(r["law"] == "rl" for r in result["fits"]) and len(result["advance"]) == 4
    rl_rows = [r for r in result["fits"] if r["method"] == "rl"]
    assert rl_rows[0]["alpha"] == rl_rows[1]["alpha"] and "bootstrap over points" in rl_rows[0]["message"]


def test_fit_run_directories(tmp_path):
    df = points()
    for (method, size), g in df.groupby(["method", "rm_params"]):
        run = Run.open(tmp_path / "sweep", {"method": method, "rm_params": size})
        run.write_points(g)
        run.mark_done()
    out = tmp_path / "o.json"
    assert main(["fit", str(tmp_path / "sweep"), "--n-boot", "0", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["fits"]
    assert len(rows) == 4 and all(r["alpha_ci"] is None and r["alpha_ci_jac"] is not None for r in rows)


def test_fit_trainer_state(tmp_path):
    """A TRL-style run: Hugging Face Trainer state with objective/kl and env/reward_mean in log_history."""
    rng = np.random.default_rng(3)
    log = []
    for step, kl in enumerate(np.linspace(0.2, 16.0, 40), start=1):
        d = np.sqrt(kl)
        log.append(
            {
                "step": step,
                "epoch": step / 40,
                "objective/kl": float(kl),
                "env/reward_mean": float(rl_law(d, 0.9, 0.3) + rng.normal(0, 0.02)),
                "learning_rate": 1e-5,
            }
        )
        log.append({"step": step, "loss": 0.5})
    state = {"global_step": 40, "epoch": 1.0, "log_history": log, "best_metric": None}
    path = tmp_path / "checkpoint-40" / "trainer_state.json"
    path.parent.mkdir()
    path.write_text(json.dumps(state, indent=2))
    out = tmp_path / "o.json"
    assert (
        main(
            [
                "fit",
                str(path),
                "--kl-col",
                "objective/kl",
                "--gold-col",
                "env/reward_mean",
                "--n-boot",
                "200",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    (row,) = json.loads(out.read_text())["fits"]
    assert row["method"] == "rl" and row["law"] == "rl" and row["n_points"] == 40
    assert abs(row["alpha"] - 0.9) < 0.05 and abs(row["beta"] - 0.3) < 0.03


def bad_input(tmp_path: Path, case: str) -> list[str]:
    """Arguments of `overopt fit` for one kind of bad input."""
    good = tmp_path / "good.csv"
    points().to_csv(good, index=False)
    p = tmp_path / "bad.csv"
    if case == "missing":
        return [str(tmp_path / "nope.csv")]
    if case == "empty":
        p.write_text("")
    elif case == "no_gold":
        p.write_text("method,kl,score\nbon,1,2\n")
    elif case == "nonfinite":
        p.write_text("method,kl,gold\nbon,1,inf\nbon,2,1\nbon,3,1\n")
    elif case == "negative_kl":
        p.write_text("method,kl,gold\nbon,-1,0\nbon,2,1\nbon,3,1\n")
    elif case == "few_points":
        p.write_text("method,kl,gold\nbon,0,0\nbon,1,0.5\nbon,2,0.6\n")
    elif case == "bad_by":
        return [str(good), "--by", "colour"]
    elif case == "bad_method":
        return [str(good), "--method", "cubic"]
    elif case == "format":
        p = tmp_path / "points.xlsx"
        p.write_text("kl,gold\n")
    elif case == "bad_n_boot":
        return [str(good), "--n-boot", "many"]
    elif case == "bad_d_cut":
        return [str(good), "--d-cut", "-1"]
    return [str(p)]


CASES = {
    "missing": "no such file",
    "empty": "empty file",
    "no_gold": "columns found: method, kl, score",
    "nonfinite": "column 'gold' has 1 non-finite",
    "negative_kl": "column 'kl' has 1 values below",
    "few_points": "group method=bon has 2 points with d > 0",
    "bad_by": "unknown --by column 'colour'",
    "bad_method": "unknown method 'cubic'",
    "format": "unreadable format",
    "bad_n_boot": "invalid int",
    "bad_d_cut": "--d-cut must be a positive number",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_in_process(tmp_path, capsys, case):
    out = tmp_path / "out.json"
    rc = main(["fit", *bad_input(tmp_path, case), "--json", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("overopt: error:") and CASES[case] in err, err
    assert "Traceback" not in err and not out.exists()


def test_bad_input_through_the_installed_script(tmp_path):
    """The entry point's smoke test for a bad table (every case runs in process above)."""
    case = "no_gold"
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [str(OVEROPT), "fit", *bad_input(tmp_path, case), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("overopt: error:") and CASES[case] in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_good_input_through_the_installed_script(tmp_path):
    csv = tmp_path / "p.csv"
    points().to_csv(csv, index=False)
    out = tmp_path / "o.json"
    proc = subprocess.run(
        [str(OVEROPT), "fit", str(csv), "--n-boot", "100", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "gold_peak" in proc.stdout and len(json.loads(out.read_text())["fits"]) == 4


def test_a_trl_grpo_output_directory(tmp_path, capsys):
    """Issue 21's "done when": `overopt fit DIR --gold-col rewards/gold/mean` on a TRL GRPO output directory
    (tests/fixtures_trl/grpo_run: TRL's file and key layout) refuses the per-token KL in one line, and fits
    the per-sequence KL with --kl-per-token, saying on one stderr line which keys and units it used."""
    grpo = Path(__file__).resolve().parent / "fixtures_trl" / "grpo_run"
    cmd = ["fit", str(grpo), "--gold-col", "rewards/gold/mean", "--n-boot", "0"]
    capsys.readouterr()
    code = main(cmd)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--kl-per-token completions/mean_length" in lines[0]
    out = tmp_path / "o.json"
    code = main(cmd + ["--kl-per-token", "completions/mean_length", "--json", str(out)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 0 and len(lines) == 2 and "per-sequence KL (approximate)" in lines[0], err
    assert "gold spread over each step's completions" in lines[1]  # the fixture logs rewards/gold/std
    (row,) = json.loads(out.read_text())["fits"]
    assert abs(row["alpha"] - 0.9) < 0.02 and abs(row["beta"] - 0.3) < 0.01
