"""Every bad input of issue 20 ends as promised: one stderr line, exit 2, nothing written (and the few
smaller cases: duplicate columns, booleans, inf, bounded --n-boot, flat and huge gold, NaN in figures).

Each case calls `overopt.cli.main` in this process; none of them starts a stage (validation comes first).
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from demo_data import write_demo

from overopt.cli import VERBS, main

SIZE = "{'name':'%s','n_layer':1,'d_model':8,'n_head':2}"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_line_error(capsys, *argv: str, match: str = "") -> str:
    """Run argv; assert exit 2 and exactly one stderr line (containing `match`). Returns that line."""
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("overopt: error: "), err
    assert "Traceback" not in err
    assert match.lower() in lines[0].lower(), lines[0]
    return lines[0]


def tree(root: Path) -> dict:
    """{relative path: (size, mtime)} of every file and directory under root."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def curve_csv(path: Path, gold=None, extra: str = "") -> Path:
    kl = np.linspace(0, 6, 12)
    gold = 0.8 * np.sqrt(kl) - 0.12 * kl if gold is None else gold
    rows = [f"bon,{k},{g}{extra}" for k, g in zip(kl, gold)]
    path.write_text("method,kl,gold\n" + "\n".join(rows) + "\n")
    return path


# ---- item 4 and 5: study configs that used to crash or write before failing


@pytest.mark.parametrize(
    "override, match",
    [
        ("policy.n_head=0", "policy.n_head"),  # was ZeroDivisionError
        ("ladder.train.val_frac=1.5", "val_frac"),  # was ZeroDivisionError
        ("world.tasks=['nope']", "tasks"),  # was written to study.json first
        ("rl.kl_coefs=[]", "rl.kl_coefs"),  # was found only when PPO started
        ("rl.seeds=[]", "rl.seeds"),
        ("policy.d_model=-8", "policy.d_model"),
        ("ladder.sizes=[{'name':'a','n_layer':1,'d_model':-8,'n_head':2}]", "d_model"),
        ("labels.flip_frac=1e999", "finite"),  # was accepted as inf
        ("bon.temperature=nan", "number"),
        ("world.seed=-1", "seed"),
        ("ladder.sizes=[" + SIZE % "x/../../../ESC" + "]", "bad proxy size"),  # was a path traversal
        ("ladder.sizes=[" + SIZE % ".hidden" + "]", "bad proxy size"),
        ("ladder.sizes=[{'name':'a'}]", "missing n_layer"),
    ],
)
def test_bad_study_config_is_one_line_and_writes_nothing(tmp_path, capsys, override, match):
    out = tmp_path / "study"
    one_line_error(capsys, "study", "--out", str(out), "--set", override, "--set", "rl.enabled=false", match=match)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_30000_character_set_value(tmp_path, capsys):
    line = one_line_error(capsys, "study", "--out", str(tmp_path / "s"), "--set", "world.tasks=" + "[" * 30000)
    assert "at most 10000" in line and len(line) < 300
    assert list(tmp_path.iterdir()) == []


def test_dangling_symlink_out(tmp_path, capsys):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    one_line_error(capsys, "study", "--out", str(link), match="symbolic link")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not (tmp_path / "nowhere").exists()


def test_unreadable_study_json_is_one_line(tmp_path, capsys):
    (tmp_path / "study.json").write_bytes(b"\xff\xfe not json")
    before = tree(tmp_path)
    one_line_error(capsys, "study", "--out", str(tmp_path), match="unreadable")
    assert tree(tmp_path) == before


# ---- fit


def test_fit_json_into_an_unwritable_place_fails_before_the_table(tmp_path, capsys):
    pts = curve_csv(tmp_path / "p.csv")
    (tmp_path / "afile").write_text("x")
    code, out, err = run(capsys, "fit", str(pts), "--n-boot", "0", "--json", str(tmp_path / "afile" / "f.json"))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--json" in err


def test_fit_json_onto_a_dangling_symlink_is_refused(tmp_path, capsys):
    pts = curve_csv(tmp_path / "p.csv")
    (tmp_path / "link.json").symlink_to(tmp_path / "nowhere" / "f.json")
    code, out, err = run(capsys, "fit", str(pts), "--n-boot", "0", "--json", str(tmp_path / "link.json"))
    assert code == 2 and out == "" and "symbolic link to nothing" in err
    assert (tmp_path / "link.json").is_symlink()  # not replaced by a file


def test_fit_seed_and_n_boot_bounds(tmp_path, capsys):
    pts = curve_csv(tmp_path / "p.csv")
    one_line_error(capsys, "fit", str(pts), "--seed", "-1", match="--seed")
    one_line_error(capsys, "fit", str(pts), "--n-boot", "1000000000", match="--n-boot")  # ran forever


def test_duplicate_csv_columns_are_named(tmp_path, capsys):
    p = tmp_path / "dup.csv"
    p.write_text("method,kl,gold,kl\n" + "".join(f"bon,{k},{k / 10},{2 * k}\n" for k in range(8)))
    one_line_error(capsys, "fit", str(p), match="duplicate column(s) 'kl'")  # was renamed kl.1, first used


def test_booleans_are_not_kl_or_gold(tmp_path, capsys):
    p = tmp_path / "b.csv"
    p.write_text("method,kl,gold\n" + "".join(f"bon,{k},{'True' if k % 2 else 'False'}\n" for k in range(8)))
    one_line_error(capsys, "fit", str(p), match="true/false")
    q = tmp_path / "b.jsonl"
    q.write_text("".join(json.dumps({"method": "bon", "kl": bool(k % 2), "gold": k}) + "\n" for k in range(8)))
    one_line_error(capsys, "fit", str(q), match="true/false")


def test_flat_gold_is_no_law(tmp_path, capsys):
    pts = curve_csv(tmp_path / "flat.csv", gold=np.ones(12))
    out_json = tmp_path / "f.json"
    code, out, _ = run(capsys, "fit", str(pts), "--n-boot", "20", "--json", str(out_json))
    assert code == 0 and "flat curve: no law fitted" in out
    row = json.loads(out_json.read_text())["fits"][0]
    assert row["message"] == "flat curve: no law fitted" and not row["converged"]
    assert row["alpha"] is None and row["beta"] is None and row["d_peak"] is None


def test_huge_gold_is_refused_without_warnings(tmp_path, capsys):
    pts = curve_csv(tmp_path / "huge.csv", gold=1e300 * (1 + np.arange(12)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow RuntimeWarning would fail here
        one_line_error(capsys, "fit", str(pts), match="beyond +-1e+12")


# ---- figures


@pytest.fixture
def demo(tmp_path):
    return write_demo(tmp_path / "study")


def test_figures_on_a_corrupt_fits_json(demo, capsys):
    text = (demo / "fits.json").read_text()
    (demo / "fits.json").write_text(text[: len(text) // 2])  # truncated
    one_line_error(capsys, "figures", str(demo), match="fits.json is unreadable")
    (demo / "fits.json").write_text(json.dumps({"fits": [{"law": "bon", "alpha": "x"}]}))
    one_line_error(capsys, "figures", str(demo), match="fits.json is damaged")
    (demo / "fits.json").write_text("[1, 2]")
    one_line_error(capsys, "figures", str(demo), match="damaged")
    assert not (demo / "figures").exists()


def test_figures_on_a_corrupt_points_table(demo, capsys):
    data = (demo / "points.parquet").read_bytes()
    (demo / "points.parquet").write_bytes(data[: len(data) // 2])
    one_line_error(capsys, "figures", str(demo), match="points.parquet is unreadable")
    assert not (demo / "figures").exists()


def test_figures_refuse_nan_gold(demo, capsys):
    pts = pd.read_parquet(demo / "points.parquet")
    pts.loc[3, "gold"] = np.nan
    pts.to_parquet(demo / "points.parquet")
    one_line_error(capsys, "figures", str(demo), match="non-finite")  # was drawn silently
    assert not (demo / "figures").exists()


def test_figures_out_dangling_symlink(demo, tmp_path, capsys):
    link = tmp_path / "figs"
    link.symlink_to(tmp_path / "nowhere")
    one_line_error(capsys, "figures", str(demo), "--out", str(link), match="symbolic link")
    assert not (tmp_path / "nowhere").exists()


# ---- sweeps


def spec(tmp_path: Path, text: str | bytes, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_sweep_status_without_points(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text(json.dumps({"name": "x"}))
    one_line_error(capsys, "sweep", "status", str(tmp_path), match="no list of points")  # was KeyError
    (tmp_path / "sweep.json").write_text(json.dumps({"points": [{"id": "../../etc", "values": {}}]}))
    one_line_error(capsys, "sweep", "status", str(tmp_path), match="damaged")


def test_non_utf8_spec(tmp_path, capsys):
    p = spec(tmp_path, b'preset = "tiny"\nname = "\xff\xfe"\n')
    one_line_error(capsys, "sweep", "launch", str(p), "--out", str(tmp_path / "o"), match="not UTF-8")
    assert not (tmp_path / "o").exists()


def test_deeply_nested_toml(tmp_path, capsys):
    p = spec(tmp_path, 'preset = "tiny"\nx = ' + "[\n" * 1500 + "]\n" * 1500)  # 3,002 lines
    one_line_error(capsys, "sweep", "launch", str(p), "--out", str(tmp_path / "o"), match="nested too deeply")
    assert not (tmp_path / "o").exists()


def test_spec_base_with_a_traversing_proxy_name(tmp_path, capsys):
    p = spec(
        tmp_path,
        'preset = "tiny"\n[base]\nladder.sizes = [{ name = "../../x", n_layer = 1, d_model = 8, n_head = 2 }]\n',
    )
    one_line_error(capsys, "sweep", "launch", str(p), "--out", str(tmp_path / "o"), match="bad proxy size")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["s.toml"]


def test_spec_name_must_be_safe(tmp_path, capsys):
    p = spec(tmp_path, 'preset = "tiny"\nname = "a\\nb"\n')
    one_line_error(capsys, "sweep", "launch", str(p), "--out", str(tmp_path / "o"), "--dry-run", match="bad sweep")


def test_slurm_missing_writes_nothing(tmp_path, capsys, monkeypatch):
    from submitit.slurm import slurm

    monkeypatch.setattr(slurm.SlurmExecutor, "affinity", staticmethod(lambda: -1))
    p = spec(tmp_path, 'preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0, 0.1]\n')
    out = tmp_path / "o"
    one_line_error(capsys, "sweep", "launch", str(p), "--out", str(out), "--executor", "slurm", match="slurm")
    assert not out.exists()  # was: point directories written, then the failure


def test_sweep_out_dangling_symlink(tmp_path, capsys, monkeypatch):
    import sweeps.launch

    monkeypatch.setattr(sweeps.launch, "run_local", None)  # never run a point here
    p = spec(tmp_path, 'preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0, 0.1]\n')
    (tmp_path / "o").symlink_to(tmp_path / "nowhere")
    one_line_error(capsys, "sweep", "launch", str(p), "--out", str(tmp_path / "o"), match="symbolic link")
    assert not (tmp_path / "nowhere").exists()


# ---- the CLI itself


def test_unexpected_error_is_one_line_exit_1_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    import overopt.fit

    def boom(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(overopt.fit, "run", boom)
    code, _, err = run(capsys, "fit", "x.csv")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "ZeroDivisionError: a bug" in err and "(run with --debug for the traceback)" in err
    code, _, err = run(capsys, "--debug", "fit", "x.csv")
    assert code == 1 and "Traceback" in err and "ZeroDivisionError" in err


def test_os_errors_are_expected_failures(capsys, monkeypatch):
    import overopt.fit

    def denied(args):
        raise PermissionError(13, "Permission denied", "/some/file")

    monkeypatch.setattr(overopt.fit, "run", denied)
    code, _, err = run(capsys, "fit", "x.csv")
    assert code == 2 and err.strip() == "overopt: error: /some/file: permission denied"


def test_help_lists_verify_without_importing_it(capsys):
    assert VERBS["verify"][0] == "overopt.verify"
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "verify" in out


def test_fault_injection_is_not_in_production_code():
    from sweeps import launch, worker

    assert not hasattr(worker, "FAULT_ENV")
    for mod in (worker, launch):
        src = inspect.getsource(mod)
        assert "FAULT" not in src and "inject" not in src.lower()
    assert os.environ.get("OVEROPT_FAULT_INJECT") is None


def test_a_named_column_that_no_input_has_is_an_error(tmp_path, capsys):
    from overopt.cli import main

    path = tmp_path / "p.csv"
    path.write_text("method,kl,gold\nbon,0.2,0.1\nbon,0.6,0.2\nbon,1.2,0.25\nbon,2,0.2\n")
    for flag in ("--kl-col", "--gold-col"):
        assert main(["fit", str(path), flag, "nope"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{flag} nope: no input has a 'nope' column" in err[0]
