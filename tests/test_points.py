"""Points loading: every input kind, column mapping, pass-through columns, and every bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from core.errors import UsageError
from core.store import Run
from ingest.load import load_points
from scaling.points import validate_points


def table(n=6, method="bon", rm_params=1e6, seed=0):
    kl = np.linspace(0.0, 5.0, n)
    return pd.DataFrame(
        {
            "method": method,
            "kl": kl,
            "gold": np.sqrt(kl) * (1 - 0.2 * np.sqrt(kl)),
            "rm_params": rm_params,
            "seed": seed,
            "n": np.arange(1, n + 1),
            "note": "x",
        }
    )


def make_run(root, cfg, df, done=True):
    run = Run.open(root, cfg)
    run.write_points(df)
    if done:
        run.mark_done()
    return run


def test_file_formats_round_trip(tmp_path):
    df = table()
    df.to_parquet(tmp_path / "p.parquet", index=False)
    df.to_csv(tmp_path / "p.csv", index=False)
    df.to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    for name in ("p.parquet", "p.csv", "p.jsonl"):
        got = load_points([tmp_path / name])
        assert list(got.columns) == list(df.columns), name
        np.testing.assert_allclose(got["kl"], df["kl"])
        np.testing.assert_allclose(got["gold"], df["gold"])
        assert (got["note"] == "x").all() and list(got["n"]) == list(df["n"])  # extra columns pass through


def test_several_inputs_concatenate(tmp_path):
    table(method="bon").to_csv(tmp_path / "a.csv", index=False)
    table(method="rl").drop(columns="note").to_csv(tmp_path / "b.csv", index=False)
    got = load_points([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")])
    assert len(got) == 12 and sorted(set(got["method"])) == ["bon", "rl"]
    assert got["note"].isna().sum() == 6


def test_column_mapping(tmp_path):
    df = table().rename(columns={"kl": "my_kl", "gold": "score"})
    df.to_csv(tmp_path / "p.csv", index=False)
    got = load_points([tmp_path / "p.csv"], kl_col="my_kl", gold_col="score")
    assert "kl" in got and "gold" in got and "my_kl" not in got
    np.testing.assert_allclose(got["kl"], table()["kl"])


def test_run_dirs_only_finished(tmp_path):
    make_run(tmp_path / "runs", {"a": 1}, table(rm_params=1e5))
    make_run(tmp_path / "runs", {"a": 2}, table(rm_params=1e6))
    make_run(tmp_path / "runs", {"a": 3}, table(rm_params=1e7), done=False)
    got = load_points([tmp_path])
    assert sorted(set(got["rm_params"])) == [1e5, 1e6]
    one = make_run(tmp_path / "runs", {"a": 4}, table(rm_params=1e8))
    assert set(load_points([one.path])["rm_params"]) == {1e8}


def test_study_dir_prefers_runs_then_top_level_file(tmp_path):
    study = tmp_path / "study"
    make_run(study / "runs", {"a": 1}, table(rm_params=1e5))
    table(rm_params=123.0).to_parquet(study / "points.parquet", index=False)
    assert set(load_points([study])["rm_params"]) == {1e5}
    flat = tmp_path / "flat"
    flat.mkdir()
    table(rm_params=123.0).to_parquet(flat / "points.parquet", index=False)
    assert set(load_points([flat])["rm_params"]) == {123.0}


@pytest.mark.parametrize("marker", ["study.json", "sweep.json"])
def test_aggregated_points_of_a_study_or_sweep_win_over_its_runs(tmp_path, marker):
    root = tmp_path / "s"
    make_run(root / "runs", {"a": 1}, table(rm_params=1e5))
    table(rm_params=7.0).to_parquet(root / "points.parquet", index=False)  # carries e.g. sweep axis columns
    (root / marker).write_text("{}")
    assert set(load_points([root])["rm_params"]) == {7.0}


def test_unfinished_run_dir_is_an_error(tmp_path):
    run = make_run(tmp_path, {"a": 1}, table(), done=False)
    with pytest.raises(UsageError, match="no finished run"):
        load_points([run.path])


def trainer_state(path, n=8):
    kl = np.linspace(0.5, 12.0, n)
    log = []
    for i, k in enumerate(kl):
        log.append(
            {
                "epoch": i / n,
                "step": 10 * (i + 1),
                "objective/kl": float(k),
                "env/reward_mean": float(np.sqrt(k) * (0.9 - 0.3 * np.log(np.sqrt(k)))),
                "lr": 1e-5,
            }
        )
        log.append({"step": 10 * (i + 1), "loss": 0.1})  # an entry without the mapped keys
    log.append({"train_runtime": 12.0, "step": 10 * n})
    state = {"best_metric": None, "epoch": 1.0, "global_step": 10 * n, "log_history": log, "max_steps": 10 * n}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state))
    return kl


def test_trainer_state(tmp_path):
    path = tmp_path / "ckpt" / "trainer_state.json"
    kl = trainer_state(path)
    got = load_points([path], kl_col="objective/kl", gold_col="env/reward_mean")
    np.testing.assert_allclose(got["kl"], kl)
    assert (got["method"] == "rl").all() and list(got["step"]) == [10 * (i + 1) for i in range(len(kl))]
    assert (got["run"] == "ckpt").all()
    with pytest.raises(UsageError, match="no log_history entry has both 'kl' and 'gold'"):
        load_points([path])


def test_tiny_negative_kl_clipped():
    df = table()
    df.loc[0, "kl"] = -5e-7
    assert validate_points(df)["kl"].min() == 0.0


def write(path, text=""):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "case,match",
    [
        ("missing", "no such file or directory"),
        ("empty", "empty file"),
        ("header_only", "empty file"),
        ("no_kl", r"no 'kl' column .*columns found: method, gold"),
        ("nonfinite", r"column 'gold' has 2 non-finite values"),
        ("text_gold", r"column 'gold' has 1 non-numeric values"),
        ("negative_kl", r"column 'kl' has 1 values below -1e-06"),
        ("bad_se", r"column 'gold_se' has 1 values <= 0"),
        ("format", "unreadable format"),
        ("corrupt_parquet", "unreadable file"),
        ("json_no_history", "unreadable format"),
        ("empty_dir", "no runs and no points file"),
    ],
)
def test_bad_inputs(tmp_path, case, match):
    p = tmp_path / "p.csv"
    if case == "missing":
        p = tmp_path / "nope.csv"
    elif case == "empty":
        write(p)
    elif case == "header_only":
        write(p, "method,kl,gold\n")
    elif case == "no_kl":
        write(p, "method,gold\nbon,1\n")
    elif case == "nonfinite":
        write(p, "kl,gold\n1,nan\n2,inf\n3,1\n")
    elif case == "text_gold":
        write(p, "kl,gold\n1,abc\n2,1\n")
    elif case == "negative_kl":
        write(p, "kl,gold\n-0.5,1\n2,1\n")
    elif case == "bad_se":
        write(p, "kl,gold,gold_se\n1,1,0\n2,1,0.1\n")
    elif case == "format":
        p = write(tmp_path / "p.txt", "kl,gold\n")
    elif case == "corrupt_parquet":
        p = write(tmp_path / "p.parquet", "not parquet at all")
    elif case == "json_no_history":
        p = write(tmp_path / "x.json", "[1, 2]")
    elif case == "empty_dir":
        p = tmp_path / "d"
        p.mkdir()
    with pytest.raises(UsageError, match=match) as e:
        load_points([p])
    assert "\n" not in str(e.value)


# ---- old column names: `kl_est` (before issue 24) is read as `kl_exact` ----


def old_bon_table():
    df = table()
    return df.assign(kl_est=0.9 * df["kl"], kl_est_se=0.01)


def test_an_old_table_with_kl_est_loads_with_kl_exact(tmp_path):
    df = old_bon_table()
    df.to_parquet(tmp_path / "p.parquet", index=False)
    df.to_csv(tmp_path / "p.csv", index=False)
    df.to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    make_run(tmp_path / "runs", {"name": "old"}, df)
    for src in ("p.parquet", "p.csv", "p.jsonl", "runs"):
        got = load_points([tmp_path / src])
        assert "kl_est" not in got and "kl_est_se" not in got, src
        np.testing.assert_allclose(got["kl_exact"], 0.9 * df["kl"])
        np.testing.assert_allclose(got["kl_exact_se"], 0.01)
        # renamed in place: the column order is the old table's
        assert list(got.columns) == [{"kl_est": "kl_exact", "kl_est_se": "kl_exact_se"}.get(c, c) for c in df.columns]


def test_old_and_new_tables_together_merge_into_kl_exact(tmp_path):
    old = old_bon_table()
    new = table(rm_params=1e7).assign(kl_exact=0.8 * table()["kl"], kl_exact_se=0.02)
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_parquet(tmp_path / "new.parquet", index=False)
    got = load_points([tmp_path / "old.csv", tmp_path / "new.parquet"])
    assert "kl_est" not in got and "kl_est_se" not in got
    np.testing.assert_allclose(got["kl_exact"], np.r_[0.9 * old["kl"], 0.8 * new["kl"]])
    np.testing.assert_allclose(got["kl_exact_se"], np.r_[np.full(len(old), 0.01), np.full(len(new), 0.02)])
    # validate_points does the same on a table concatenated in memory (a study's old and new runs)
    both = validate_points(pd.concat([old, new], ignore_index=True))
    assert "kl_est" not in both and np.allclose(both["kl_exact"], got["kl_exact"])


def test_an_old_column_asked_for_by_name_is_still_found(tmp_path):
    df = old_bon_table()
    df.to_csv(tmp_path / "p.csv", index=False)
    got = load_points([tmp_path / "p.csv"], kl_col="kl_est")  # the old name: used as the KL, not renamed
    np.testing.assert_allclose(got["kl"], 0.9 * df["kl"])
    assert "kl_exact" not in got
    got = load_points([tmp_path / "p.csv"], kl_col="kl_exact")  # the new name finds the old column
    np.testing.assert_allclose(got["kl"], 0.9 * df["kl"])


def test_a_study_directory_of_an_old_study_gives_the_figures_kl_exact(tmp_path):
    from figures.data import load_data

    old_bon_table().to_parquet(tmp_path / "points.parquet", index=False)
    (tmp_path / "study.json").write_text("{}")
    points = load_data(tmp_path).points
    assert "kl_est" not in points and np.allclose(points["kl_exact"], 0.9 * points["kl"])


# ---- the `rule` column: best-of-n's selection rule ----


def test_rule_values_are_checked_and_bon_rows_without_one_are_max():
    bon, rl = table(), table(method="rl")
    soft = table().assign(rule="soft")
    got = validate_points(pd.concat([bon, rl, soft], ignore_index=True))
    assert got["rule"].tolist()[: len(bon)] == ["max"] * len(bon)  # a best-of-n row without a rule
    assert got["rule"].iloc[len(bon) : 2 * len(bon)].isna().all()  # RL rows have none
    assert (got["rule"].iloc[2 * len(bon) :] == "soft").all()
    assert "rule" not in validate_points(bon)  # a table without the column keeps none
    for bad in ("argmax", 3):
        with pytest.raises(UsageError, match=r"column 'rule' has unknown value\(s\) '(argmax|3)' \(rules: max, soft"):
            validate_points(bon.assign(rule=bad))


def test_prompt_rows_replace_only_the_rules_they_hold():
    from scaling.points import swap_bon_rows

    points = pd.concat([table(), table(method="rl"), table().assign(rule="poisson")], ignore_index=True)
    prompts = table(n=3).assign(prompt=0)  # best-of-n's own per-prompt rows (no rule column: max)
    got = swap_bon_rows(points, prompts)
    assert len(got) == 6 + 6 + 3 and (got["rule"] == "poisson").sum() == 6
    assert got.loc[got["method"] == "bon", "prompt"].notna().sum() == 3
    assert len(swap_bon_rows(table(), prompts)) == 3  # without a rule column: every best-of-n row replaced
