"""`overopt fit` on what trainers log (issue 21): TRL GRPO/PPO output and checkpoint directories, log_history
as JSON lines, OpenRLHF logs, TensorBoard events and W&B CSV exports; KL units (per token refused or
converted), the names it used, name errors, skipped and bad rows, FILE:bon / FILE:rl and --recentre.

The fixtures are tests/fixtures_trl/, written by its make_fixtures.py (synthetic runs with the trainers'
exact key and file layout; gold = d (0.9 - 0.3 log d) with d = sqrt(the per-sequence KL))."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.load import load_points, load_points_with_sources
from ingest.trainer_logs import TRAINERS, identify
from overopt.cli import main

FIX = Path(__file__).resolve().parent / "fixtures_trl"
GRPO = FIX / "grpo_run"
LENGTH = "completions/mean_length"


def fit(capsys, tmp_path, *argv):
    """(exit code, stdout, stderr lines, --json result or None) of `overopt fit ARGV --n-boot 0 --json`."""
    out = tmp_path / "fit.json"
    out.unlink(missing_ok=True)
    code = main(["fit", *map(str, argv), "--n-boot", "0", "--json", str(out)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err.strip().splitlines(), json.loads(out.read_text()) if out.exists() else None


def error(capsys, tmp_path, *argv) -> str:
    code, _, err, result = fit(capsys, tmp_path, *argv)
    assert code == 2 and len(err) == 1 and err[0].startswith("overopt: error: "), err
    assert result is None
    return err[0]


def test_fixtures_are_what_the_script_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_fixtures", FIX / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for rel, text in mod.files().items():
        assert (FIX / rel).read_text() == text, rel
    if mod.write_tensorboard(tmp_path):
        assert (tmp_path / mod.TB_RUN / mod.TB_FILE).read_bytes() == (FIX / mod.TB_RUN / mod.TB_FILE).read_bytes()


def test_grpo_output_dir_per_token_kl_is_refused_in_one_line(capsys, tmp_path):
    line = error(capsys, tmp_path, GRPO, "--gold-col", "rewards/gold/mean")
    assert "per-token KL" in line and f"--kl-per-token {LENGTH}" in line and "checkpoint-40" in line


def test_grpo_output_dir_fits_with_per_sequence_kl(capsys, tmp_path):
    code, out, err, result = fit(capsys, tmp_path, GRPO, "--gold-col", "rewards/gold/mean", "--kl-per-token", LENGTH)
    assert code == 0 and "alpha" in out
    (row,) = result["fits"]
    assert row["method"] == "rl" and row["n_points"] == 20  # the latest checkpoint's 20 train entries
    assert abs(row["alpha"] - 0.9) < 0.02 and abs(row["beta"] - 0.3) < 0.01
    assert len(err) == 2 and err[0].startswith("[overopt] fit: kl from 'kl' (TRL GRPO/RLOO, per-token)")
    assert "gold spread over each step's completions" in err[1]  # the fixture logs rewards/gold/std
    assert f"x '{LENGTH}' = per-sequence KL (approximate)" in err[0] and "gold from 'rewards/gold/mean'" in err[0]
    assert "latest of 2 checkpoints" in err[0] and "20 of 23 entries" in err[0]
    (src,) = result["inputs"]
    assert src["kl"] == "kl" and src["kl_units"] == "per-token" and src["kl_per_token"] == LENGTH
    # the default --gold-col finds rewards/gold/mean; per-token as logged (--kl-per-token 1) fits other numbers
    code, _, err, result = fit(capsys, tmp_path, GRPO, "--kl-per-token", "1")
    assert code == 0 and "fitted per token as logged" in err[0]
    assert abs(result["fits"][0]["alpha"] - 0.9) > 0.5


def test_the_converted_kl_is_kl_times_length():
    df, (src,) = load_points_with_sources([GRPO], kl_per_token=LENGTH)
    np.testing.assert_allclose(df["kl"], df["kl_per_token"] * df[LENGTH])
    assert list(df["step"]) == list(range(2, 41, 2)) and (df["run"] == "grpo_run").all()
    assert np.allclose(df["proxy"], df["rewards/proxy/mean"]) and src["proxy"] == "reward"
    assert not any(c.startswith("eval_") for c in df.columns if df[c].notna().any())  # eval rows skipped
    assert "train_runtime" not in df.columns  # the summary entry (same step 40, a partial window) skipped


def test_a_checkpoint_dir_and_a_trainer_state_file(tmp_path):
    ckpt = load_points([GRPO / "checkpoint-20"], kl_per_token=LENGTH)
    assert len(ckpt) == 10 and ckpt["step"].max() == 20
    assert len(load_points([GRPO / "checkpoint-40" / "trainer_state.json"], kl_per_token=LENGTH)) == 20


def test_a_root_trainer_state_wins_over_checkpoints_never_both():
    df, (src,) = load_points_with_sources([FIX / "ppo_run"])
    assert len(df) == 40 and src["input"].endswith("ppo_run/trainer_state.json")
    assert src["kl"] == "objective/kl" and src["kl_units"] == "per-sequence" and src["gold"] == "gold"
    assert src["trainer"].startswith("TRL PPO")


def test_a_model_config_json_is_not_an_overopt_run(capsys, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(GRPO / "config.json", model / "config.json")
    shutil.copy(GRPO / "generation_config.json", model / "generation_config.json")
    line = error(capsys, tmp_path, model)
    assert "Hugging Face model directory (gpt2), not an overopt run" in line and "checkpoint-N" in line
    assert "unfinished run" not in line
    line = error(capsys, tmp_path, GRPO / "config.json")
    assert "Hugging Face model config, not a log" in line


def test_missing_kl_explains_grpo_beta(capsys, tmp_path):
    line = error(capsys, tmp_path, FIX / "grpo_beta0", "--kl-per-token", LENGTH)
    assert "log 'kl' only when beta != 0" in line and "GRPOConfig(beta=0.04)" in line


def test_a_name_error_lists_every_key_with_close_matches(capsys, tmp_path):
    line = error(capsys, tmp_path, GRPO, "--gold-col", "rewards/gld/mean", "--kl-per-token", LENGTH)
    assert "no gold key 'rewards/gld/mean' (close: 'rewards/gold/mean'" in line
    keys = json.loads((GRPO / "checkpoint-40" / "trainer_state.json").read_text())["log_history"]
    for key in {k for e in keys for k in e}:  # every key, not the first 20
        assert key in line, key
    line = error(capsys, tmp_path, GRPO, "--kl-col", "kll", "--kl-per-token", LENGTH)
    assert "no KL key 'kll' (close: 'kl'" in line


def test_log_history_as_json_lines(capsys, tmp_path):
    path = FIX / "grpo_log_history.jsonl"
    code, _, err, result = fit(capsys, tmp_path, path, "--kl-per-token", LENGTH)
    assert code == 0 and result["fits"][0]["n_points"] == 20 and "20 of 23 entries" in err[0]
    lines = path.read_text().splitlines()
    entry = json.loads(lines[4])
    entry["kl"] = float("nan")  # json writes NaN: a logged non-finite value is an error naming the line
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:4] + [json.dumps(entry)] + lines[5:]) + "\n")
    line = error(capsys, tmp_path, bad, "--kl-per-token", LENGTH)
    assert f"{bad}: line 5 (step {entry['step']}): 'kl' is nan, not a finite number" in line
    entry["kl"] = True
    bad.write_text("\n".join(lines[:4] + [json.dumps(entry)] + lines[5:]) + "\n")
    assert "'kl' is True, not a finite number" in error(capsys, tmp_path, bad, "--kl-per-token", LENGTH)


def test_a_non_finite_value_in_a_trainer_state_names_the_entry(capsys, tmp_path):
    state = json.loads((FIX / "ppo_run" / "trainer_state.json").read_text())
    state["log_history"][6]["gold"] = float("inf")
    path = tmp_path / "run" / "trainer_state.json"
    path.parent.mkdir()
    path.write_text(json.dumps(state))
    line = error(capsys, tmp_path, path)
    assert f"{path}: log_history[6] (step 7): 'gold' is inf, not a finite number" in line


def test_openrlhf_kl_is_per_token(capsys, tmp_path):
    path = FIX / "openrlhf.jsonl"
    line = error(capsys, tmp_path, path)
    assert "(OpenRLHF) is a per-token KL" in line and "--kl-per-token response_length" in line
    code, _, err, result = fit(capsys, tmp_path, path, "--kl-per-token", "response_length")
    assert code == 0 and abs(result["fits"][0]["alpha"] - 0.9) < 0.02 and "OpenRLHF, per-token" in err[0]


def test_kl_per_token_needs_something_to_convert(capsys, tmp_path):
    line = error(capsys, tmp_path, FIX / "ppo_run", "--kl-per-token", LENGTH)
    assert "no input has a per-token KL to convert" in line
    for bad in ("0", "-3", "nan", "inf", ""):
        assert "--kl-per-token" in error(capsys, tmp_path, GRPO, f"--kl-per-token={bad}")
    assert "no length key 'nope'" in error(capsys, tmp_path, GRPO, "--kl-per-token", "nope")
    code, _, _, result = fit(capsys, tmp_path, GRPO, "--kl-per-token", "50")  # a fixed length
    assert code == 0 and result["inputs"][0]["kl_per_token"] == 50.0


def bon_csv(path: Path, offset: float = 0.0) -> Path:
    n = np.arange(1, 65)
    kl = np.log(n) - (n - 1) / n
    d = np.sqrt(kl)
    path.write_text(
        "kl,gold\n" + "".join(f"{float(a)!r},{float(b) + offset!r}\n" for a, b in zip(kl, d * (1.0 - 0.3 * d)))
    )
    return path


def test_file_method_specs_mix_bon_and_rl(capsys, tmp_path):
    bon = bon_csv(tmp_path / "bon.csv")
    line = error(capsys, tmp_path, bon, FIX / "ppo_run")
    assert f"{bon}: no 'method' column" in line and f"{bon}:bon" in line
    code, _, _, result = fit(capsys, tmp_path, f"{bon}:bon", FIX / "ppo_run")
    assert code == 0
    rows = {r["method"]: r for r in result["fits"]}
    assert set(rows) == {"bon", "rl"} and rows["bon"]["law"] == "bon" and rows["rl"]["law"] == "rl"
    assert abs(rows["bon"]["alpha"] - 1.0) < 1e-6 and abs(rows["rl"]["alpha"] - 0.9) < 0.01
    code, _, _, result = fit(capsys, tmp_path, f"{bon}:rl")  # the spec replaces the method
    assert code == 0 and result["fits"][0]["law"] == "rl"
    assert "an input's method after ':'" in error(capsys, tmp_path, f"{bon}:nope")
    odd = tmp_path / "odd:rl"  # an existing path is taken whole
    bon_csv(tmp_path / "x.csv").rename(odd)
    assert "unreadable format" in error(capsys, tmp_path, odd)


def test_recentre(capsys, tmp_path):
    bon = bon_csv(tmp_path / "bon.csv", offset=0.5)
    code, _, _, raw = fit(capsys, tmp_path, f"{bon}:bon")  # as logged: the offset spoils the law through 0
    assert code == 0 and raw["fits"][0]["r2"] < 0.9
    for how in ("first", "0.5"):
        code, _, _, result = fit(capsys, tmp_path, f"{bon}:bon", "--recentre", how)
        assert code == 0 and abs(result["fits"][0]["alpha"] - 1.0) < 1e-6 and result["fits"][0]["r2"] > 0.999
    for bad in ("x", "nan", "inf", "1e13"):
        assert "--recentre" in error(capsys, tmp_path, bon, "--recentre", bad)


def test_recentre_first_is_per_curve():
    df = load_points([FIX / "wandb_kl.csv", FIX / "wandb_gold.csv"], kl_per_token=50.0, recentre="first")
    for _, sub in df.groupby("run"):
        assert sub.loc[sub["step"].idxmin(), "gold"] == 0.0


def test_wandb_exports_merge_by_run_and_step(capsys, tmp_path):
    df, sources = load_points_with_sources([FIX / "wandb_kl.csv", FIX / "wandb_gold.csv"], kl_per_token=50.0)
    assert sorted(df["run"].unique()) == ["grpo-a", "grpo-b"]
    assert (df["run"] == "grpo-a").sum() == 20 and (df["run"] == "grpo-b").sum() == 15  # empty cells skipped
    assert not any(c.endswith(("__MIN", "__MAX")) for c in df.columns)
    assert [s["run"] for s in sources] == ["grpo-a", "grpo-b"] and sources[0]["kl"] == "kl"
    code, _, err, result = fit(capsys, tmp_path, FIX / "wandb_kl.csv", FIX / "wandb_gold.csv", "--kl-per-token", "50")
    assert code == 0 and "wandb_gold.csv run grpo-a" in err[0] and len(err) == 2  # one line a run
    assert err[1].startswith("[overopt] fit: run grpo-b: ") and len(result["fits"]) == 2  # a curve a run
    # one panel alone has no gold: the error lists what it has
    assert "no gold key 'gold'" in error(capsys, tmp_path, FIX / "wandb_kl.csv", "--kl-per-token", "50")


def test_tensorboard_events(capsys, tmp_path):
    pytest.importorskip("tensorboard")
    runs = GRPO / "runs"
    tb = load_points([runs], kl_per_token=LENGTH).sort_values("step").reset_index(drop=True)
    state = load_points([GRPO], kl_per_token=LENGTH)
    assert list(tb["step"]) == list(state["step"])
    np.testing.assert_allclose(tb["kl"], state["kl"], rtol=1e-6)  # float32 in the events
    np.testing.assert_allclose(tb["gold"], state["gold"], rtol=1e-6)
    event = next(runs.rglob("events.out.tfevents.*"))
    code, _, err, result = fit(capsys, tmp_path, event, "--kl-per-token", LENGTH)
    assert code == 0 and abs(result["fits"][0]["alpha"] - 0.9) < 0.02 and "events.out.tfevents" in err[0]


def test_tensorboard_without_the_extra_is_one_line(capsys, tmp_path, monkeypatch):
    for name in (
        "tensorboard",
        "tensorboard.backend.event_processing.event_accumulator",
        "tensorboard.util.tensor_util",
    ):
        monkeypatch.setitem(sys.modules, name, None)  # importing it raises ImportError
    line = error(capsys, tmp_path, GRPO / "runs", "--kl-per-token", LENGTH)
    assert "pip install 'overopt[tb]'" in line


def test_known_trainers_and_their_units():
    keys = {
        "TRL GRPO/RLOO": ["kl", "reward", "rewards/gold/mean", LENGTH, "frac_reward_zero_std"],
        "OpenRLHF": ["kl", "reward", "response_length", "policy_loss", "actor_lr"],
        "TRL PPO/RLOO (PPOv2-style)": ["objective/kl", "objective/scores", "objective/rlhf_reward"],
        "TRL PPO (<= 0.11)": ["objective/kl", "objective/kl_coef", "ppo/mean_scores", "env/reward_mean"],
        "lm-human-preferences": ["objective/kl", "objective/kl_coef", "objective/score", "ppo/loss/total"],
    }
    per_token = {t.name: t.per_token for t in TRAINERS}
    assert set(keys) == set(per_token)
    for name, ks in keys.items():
        trainer = identify(ks)
        assert trainer is not None and trainer.name == name and trainer.kl in ks
    assert [n for n, p in per_token.items() if p] == ["OpenRLHF", "TRL GRPO/RLOO"]
    assert identify(["kl", "gold", "method"]) is None  # an overopt points table


def test_a_points_table_is_not_a_trainer_log(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text("".join(json.dumps({"method": "rl", "kl": k, "gold": k / 10, "step": k}) + "\n" for k in range(5)))
    df, sources = load_points_with_sources([p])
    assert len(df) == 5 and sources == []
