"""Trainer runs as a user has them (issue 33): real TRL 1.16 GRPO and RLOO runs (tests/fixtures_trl/trl116,
trimmed; make_trl_runs.py there made them), each run its own curve with its algo, pooling on request, KL
slightly below 0 clipped and said, steps out of order refused, evaluation entries, and hostile logs."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import curve_fit

from ingest.event_logs import truncated
from ingest.load import load_points_with_sources
from overopt.cli import main

REAL = Path(__file__).resolve().parent / "fixtures_trl" / "trl116"
LENGTH = "completions/mean_length"


def run(capsys, tmp_path, *argv, verb="fit"):
    """(exit code, stdout, stderr lines, --json result or None)."""
    out = tmp_path / "r.json"
    out.unlink(missing_ok=True)
    code = main([verb, *map(str, argv), "--json", str(out)])
    cap = capsys.readouterr()
    return code, cap.out, cap.err.strip().splitlines(), json.loads(out.read_text()) if out.exists() else None


def refused(capsys, tmp_path, *argv, verb="fit") -> str:
    code, out, err, result = run(capsys, tmp_path, *argv, verb=verb)
    assert code == 2 and len(err) == 1 and err[0].startswith("overopt: error: ") and result is None, err
    return err[0]


def history(path: Path) -> list[dict]:
    return json.loads(path.read_text())["log_history"]


def state_dir(tmp_path: Path, name: str, entries: list, card: str | None = None) -> Path:
    d = tmp_path / name / "checkpoint-9"
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text(json.dumps({"log_history": entries}))
    if card:
        (tmp_path / name / "README.md").write_text(card)
    return d.parent


def grpo_entries(n=12, kl0=0.002, alpha=0.9, beta=0.3, eval_every=0) -> list[dict]:
    out = []
    for s in range(1, n + 1):
        kl_tok = kl0 * s * s
        d = np.sqrt(kl_tok * 10)
        e = {"step": s, "kl": kl_tok, LENGTH: 10.0, "rewards/gold/mean": float(d * (alpha - beta * np.log(d)))}
        e.update({"rewards/gold/std": 0.5, "reward": 1.0, "frac_reward_zero_std": 0.0})
        out.append(e)
        if eval_every and s % eval_every == 0:
            out.append(
                {
                    "step": s,
                    "eval_kl": kl_tok,
                    f"eval_{LENGTH}": 10.0,
                    "eval_rewards/gold/mean": e["rewards/gold/mean"] + 0.01,
                }
            )
    return out


def rl_law(d, alpha, beta):
    return d * (alpha - beta * np.log(d))


def test_real_grpo_and_rloo_runs_are_each_a_curve_and_match_curve_fit(capsys, tmp_path):
    code, _, err, result = run(capsys, tmp_path, REAL, "--kl-per-token", LENGTH, "--n-boot", "0")
    assert code == 0
    assert [line.split(":")[1].strip() for line in err[:3]] == ["run grpo_s1", "run grpo_s2", "run rloo_s1"]
    assert all("trainer_state.json" in line for line in err[:3])  # what was read from each run
    assert "algo grpo" in err[0] and "algo rloo" in err[2]  # from TRL's model card
    assert "clipped to 0" in err[3] and "rloo_s1: log_history[3] (step 4) -0.00808" in err[3]
    fits = {r["run"]: r for r in result["fits"]}
    assert sorted(fits) == ["grpo_s1", "grpo_s2", "rloo_s1"] and fits["rloo_s1"]["algo"] == "rloo"
    for name, row in fits.items():  # an independent fit: scipy's curve_fit on the logged numbers
        h = [e for e in history(REAL / name / "checkpoint-50" / "trainer_state.json") if "kl" in e]
        kl = np.clip([e["kl"] * e[LENGTH] for e in h], 0, None)
        gold = np.array([e["rewards/gold/mean"] for e in h])
        d = np.sqrt(kl)
        keep = d > 0
        (alpha, beta), _ = curve_fit(rl_law, d[keep], gold[keep], p0=(0.5, 0.1))
        assert row["alpha"] == pytest.approx(alpha, rel=1e-6) and row["beta"] == pytest.approx(beta, rel=1e-6)


def test_runs_pooled_only_on_request(capsys, tmp_path):
    grpo = [REAL / "grpo_s1", REAL / "grpo_s2"]
    _, _, _, apart = run(capsys, tmp_path, *grpo, "--kl-per-token", LENGTH, "--n-boot", "0")
    assert len(apart["fits"]) == 2
    code, _, err, seeds = run(capsys, tmp_path, *grpo, "--kl-per-token", LENGTH, "--pool-runs", "seeds")
    (row,) = seeds["fits"]
    assert code == 0 and row["interval"] == "seeds" and "2 seeds" in row["message"] and "pooled as seed" in err[0]
    _, _, _, curve = run(capsys, tmp_path, *grpo, "--kl-per-token", LENGTH, "--pool-runs", "curve", "--n-boot", "0")
    assert len(curve["fits"]) == 1 and curve["fits"][0]["n_points"] == 50
    # --shared-alpha --by run: one alpha, one beta a run, equal to a joint least squares in float64 numpy
    _, _, _, shared = run(capsys, tmp_path, *grpo, "--kl-per-token", LENGTH, "--shared-alpha", "--by", "run")
    df, _ = load_points_with_sources(grpo, kl_per_token=LENGTH)
    df = df[df["kl"] > 0]
    d, y = np.sqrt(df["kl"].to_numpy()), df["gold"].to_numpy()
    first = (df["run"] == "grpo_s1").to_numpy()
    X = np.stack([d, -d * np.log(d) * first, -d * np.log(d) * ~first], axis=1)
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    rows = {r["run"]: r for r in shared["fits"]}
    assert rows["grpo_s1"]["alpha"] == pytest.approx(coef[0], rel=1e-9) == rows["grpo_s2"]["alpha"]
    assert [rows[r]["beta"] for r in ("grpo_s1", "grpo_s2")] == pytest.approx(coef[1:], rel=1e-9)


def test_seeds_pooled_on_request_give_the_t_interval_over_runs(capsys, tmp_path):
    """Three runs of one config (seeds 1, 2, 3 in args.json) on one KL grid: pooled as seeds, alpha and beta are
    the mean of the runs' own fits and their intervals mean +- t(0.975, 2) sd / sqrt(3) over the runs (computed
    here with numpy and scipy, independently of overopt); each run alone is its own curve."""
    from scipy import stats

    coefs = [(0.9, 0.3), (1.1, 0.45), (0.8, 0.2)]
    runs = []
    for seed, (alpha, beta) in enumerate(coefs, start=1):
        d = state_dir(tmp_path, f"grpo_seed{seed}", grpo_entries(12, alpha=alpha, beta=beta))
        (d / "args.json").write_text(json.dumps({"seed": seed}))
        runs.append(d)
    per_run = []
    for d in runs:  # an independent least squares a run: gold = alpha x - beta x log x, x = sqrt(KL)
        h = history(d / "checkpoint-9" / "trainer_state.json")
        x = np.sqrt([e["kl"] * e[LENGTH] for e in h])
        gold = np.array([e["rewards/gold/mean"] for e in h])
        per_run.append(np.linalg.lstsq(np.stack([x, -x * np.log(x)], axis=1), gold, rcond=None)[0])
    per_run = np.array(per_run)
    assert per_run == pytest.approx(np.array(coefs), rel=1e-9)
    mean, half = per_run.mean(axis=0), stats.t.ppf(0.975, 2) * per_run.std(axis=0, ddof=1) / np.sqrt(3)
    code, _, err, result = run(capsys, tmp_path, *runs, "--kl-per-token", LENGTH, "--pool-runs", "seeds")
    (row,) = result["fits"]
    assert code == 0 and row["interval"] == "seeds" and "3 seeds" in row["message"], (err, row)
    assert [row["alpha"], row["beta"]] == pytest.approx(mean, rel=1e-9)
    assert row["alpha_ci"] == pytest.approx([mean[0] - half[0], mean[0] + half[0]], rel=1e-9)
    assert row["beta_ci"] == pytest.approx([mean[1] - half[1], mean[1] + half[1]], rel=1e-9)
    assert [s["pooled"] for s in result["inputs"]] == ["seed 1", "seed 2", "seed 3"]
    _, _, _, apart = run(capsys, tmp_path, *runs, "--kl-per-token", LENGTH, "--n-boot", "0")
    got = sorted((r["run"], r["alpha"], r["beta"]) for r in apart["fits"])
    assert [g[0] for g in got] == ["grpo_seed1", "grpo_seed2", "grpo_seed3"]
    assert np.array([g[1:] for g in got]) == pytest.approx(per_run, rel=1e-9)


def test_kl_below_zero_clipped_or_refused_naming_the_step(capsys, tmp_path):
    entries = grpo_entries()
    entries[0]["kl"] = -0.01  # noise: within 0.05 nats per token
    code, _, err, result = run(capsys, tmp_path, state_dir(tmp_path, "a", entries), "--kl-per-token", LENGTH)
    assert code == 0 and "1 KL value(s)" in err[1] and "(step 1) -0.01" in err[1]
    entries[0]["kl"] = -0.2
    line = refused(capsys, tmp_path, state_dir(tmp_path, "b", entries), "--kl-per-token", LENGTH)
    assert "log_history[0] (step 1): the KL is -0.2 nats/token, clearly negative" in line


@pytest.mark.parametrize("how", ["backwards", "repeats"])
def test_concatenated_or_duplicated_histories_are_refused(capsys, tmp_path, how):
    entries = grpo_entries(8)
    entries = entries + entries if how == "backwards" else [e for e in entries for _ in (0, 1)]
    line = refused(capsys, tmp_path, state_dir(tmp_path, how, entries), "--kl-per-token", LENGTH)
    at = "log_history[8] (step 1): step 1 goes backwards after step 8" if how == "backwards" else "step 1 repeats"
    assert at in line and "two histories concatenated" in line


def test_hostile_logs_are_one_line(capsys, tmp_path):
    entries = grpo_entries(10)
    half = [e if i % 2 else [e["step"]] for i, e in enumerate(entries)]
    line = refused(capsys, tmp_path, state_dir(tmp_path, "half", half), "--kl-per-token", LENGTH)
    assert "log_history[0] is [1], not an object (5 of 10 entries" in line  # never "15 of 15"
    big = tmp_path / "big" / "trainer_state.json"
    big.parent.mkdir()
    big.write_text('{"log_history": [{"step": 1, "kl": ' + "9" * 5000 + "}]}")
    assert "unreadable file" in refused(capsys, tmp_path, big)
    wide = tmp_path / "w.csv"
    wide.write_text("Step,a - train/kl,a - kl,a - train/rewards/gold/mean\n1,0.1,0.2,0.3\n")
    assert "two columns for 'kl'" in refused(capsys, tmp_path, wide, "--kl-per-token", "10")


def test_a_truncated_event_file_is_said(tmp_path):
    record = struct.pack("<Q", 5) + b"\0" * 4 + b"12345" + b"\0" * 4
    whole = tmp_path / "events.out.tfevents.1.host"
    whole.write_bytes(record * 2)
    assert truncated(whole) is None
    whole.write_bytes(record * 2 + record[:10])
    assert truncated(tmp_path) == whole.name


def test_eval_entries_in_one_flag_and_algo(capsys, tmp_path):
    path = state_dir(tmp_path, "my-grpo-run", grpo_entries(12, eval_every=2))
    code, _, err, result = run(capsys, tmp_path, path, "--eval", "--kl-per-token", LENGTH, "--n-boot", "0")
    (src,) = result["inputs"]
    assert code == 0 and src["kl"] == "eval_kl" and src["gold"] == "eval_rewards/gold/mean" and src["rows"] == 6
    assert "(TRL GRPO/RLOO, per-token)" in err[0] and "algo grpo" in err[0]  # the directory's name says grpo
    _, _, err, result = run(capsys, tmp_path, path, "--algo", "rloo", "--kl-per-token", LENGTH, "--n-boot", "0")
    assert result["fits"][0]["algo"] == "rloo" and "(spread 'rewards/gold/std')" in err[0]
    df, _ = load_points_with_sources([path], kl_per_token=LENGTH)
    assert (df["gold_sd"] == 0.5).all() and (df["algo"] == "grpo").all()
    table = tmp_path / "p.csv"
    table.write_text("method,kl,gold\n" + "".join(f"rl,{k},{k / 10}\n" for k in range(1, 6)))
    assert "--eval applies to trainer logs" in refused(capsys, tmp_path, table, "--eval")


def test_a_parent_directory_lists_every_run(capsys, tmp_path):
    for name in ("grpo_s1", "rloo_s1"):
        shutil.copytree(REAL / name, tmp_path / "runs" / name)
    (tmp_path / "runs" / "notes").mkdir()  # neither a run nor events: not a run
    code, _, err, result = run(capsys, tmp_path, tmp_path / "runs", "--kl-per-token", LENGTH, "--n-boot", "0")
    assert code == 0 and len(result["fits"]) == 2 and sum(line.startswith("[overopt] fit: run ") for line in err) == 2


def test_a_run_read_as_events_and_as_trainer_state_is_one_run(tmp_path):
    """TRL writes trainer_state.json and TensorBoard events for one run: given both, the run is read once, from
    trainer_state.json as its directory reads it, the note naming the events not read; what only the events'
    args record (the seed) is kept. Events of another run stay."""
    from ingest.run_dirs import one_source_a_run
    from ingest.trainer_logs import TrainerLog

    run = tmp_path / "grpo_a"
    (run / "checkpoint-9").mkdir(parents=True)
    (run / "runs" / "Jan01_host").mkdir(parents=True)
    (tmp_path / "other" / "runs" / "Jan02_host").mkdir(parents=True)
    rec = [{"step": 1, "kl": 0.1}]
    state = TrainerLog(rec, str(run / "checkpoint-9" / "trainer_state.json"), ["e"], "trainer_state", "grpo_a")
    events = TrainerLog(rec, str(run / "runs" / "Jan01_host"), ["e"], "tensorboard", "grpo_a", extra={"seed": 7})
    other = TrainerLog(rec, str(tmp_path / "other" / "runs" / "Jan02_host"), ["e"], "tensorboard", "other")
    assert one_source_a_run([events, state, other]) == [state, other]
    assert state.note == f"its TensorBoard events {events.where} not read (trainer_state.json is exact)"
    assert state.extra["seed"] == 7 and "TensorBoard args" in state.extra["seed_from"]


@pytest.mark.parametrize("how", ["directories", "files"])
def test_a_run_given_as_its_events_and_its_trainer_state_is_one_curve(capsys, tmp_path, how):
    """Given as two inputs (the run and its runs/ directory, or the two files), one run was two curves."""
    pytest.importorskip("tensorboard")
    grpo = Path(__file__).resolve().parent / "fixtures_trl" / "grpo_run"
    event = next((grpo / "runs").rglob("events.out.tfevents.*"))
    inputs = [grpo, grpo / "runs"] if how == "directories" else [event, grpo / "checkpoint-40" / "trainer_state.json"]
    code, _, err, result = run(capsys, tmp_path, *inputs, "--kl-per-token", LENGTH, "--n-boot", "0")
    assert code == 0 and len(result["fits"]) == 1, err
    assert f"its TensorBoard events {event if how == 'files' else event.parent} not read" in err[0], err
    assert "trainer_state.json" in result["inputs"][0]["input"] and len(result["inputs"]) == 1


def test_a_curve_that_does_not_start_at_zero_warns(capsys, tmp_path):
    entries = grpo_entries(12)
    for e in entries:
        e["rewards/gold/mean"] += 0.5
        e["rewards/gold/mean"] += 0.001 * np.sin(e["step"])  # a little noise: the fit's rmse is the SE
    path = state_dir(tmp_path, "offset", entries)
    _, _, err, _ = run(capsys, tmp_path, path, "--kl-per-token", LENGTH, "--n-boot", "0")
    assert any("warning" in line and "--recentre first" in line for line in err)
    _, _, err, _ = run(capsys, tmp_path, path, "--kl-per-token", LENGTH, "--n-boot", "0", "--recentre", "first")
    assert not any("warning" in line for line in err) and "gold recentred (--recentre first)" in err[0]


def test_figures_take_fit_s_input_flags(capsys, tmp_path):
    figs = tmp_path / "figs"
    code = main(
        [
            "figures",
            str(REAL / "grpo_s1"),
            "--kl-per-token",
            LENGTH,
            "--out",
            str(figs),
            "--only",
            "extrapolation",
            "--no-report",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "extrapolation:" in out
    assert main(["figures", str(REAL / "grpo_s1"), "--out", str(figs)]) == 2  # per-token KL: the flag is needed
    assert "--kl-per-token" in capsys.readouterr().err


class _Opens:
    """Unpickled, it creates the file it names: proof that a pickle was (or was not) loaded."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_seeds_from_what_is_safe_to_read_never_the_pickle(capsys, tmp_path):
    import pickle

    runs = {name: tmp_path / name for name in ("grpo_s1", "grpo_s2")}
    for name, d in runs.items():
        shutil.copytree(REAL / name, d)
        (d / "training_args.bin").write_bytes(pickle.dumps(_Opens(tmp_path / f"unpickled_{name}")))
    flags = ("--kl-per-token", LENGTH, "--pool-runs", "seeds", "--n-boot", "0")
    # no seed in any file overopt reads: one warning line, the runs keyed by their names
    code, _, err, result = run(capsys, tmp_path, *runs.values(), *flags)
    warn = [line for line in err if "warning: --pool-runs seeds" in line]
    assert code == 0 and len(warn) == 1 and "grpo_s1, grpo_s2: no seed recorded" in warn[0]
    assert "training_args.bin is a pickle and is never unpickled" in warn[0]
    assert [s["pooled"] for s in result["inputs"]] == [f"seed '{n}' (the run's name: no seed recorded)" for n in runs]
    # a JSON file of arguments beside one run, trial_params in the other's trainer_state.json
    (runs["grpo_s1"] / "args.json").write_text(json.dumps({"seed": 11, "learning_rate": 1e-5}))
    state = runs["grpo_s2"] / "checkpoint-50" / "trainer_state.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "trial_params": {"seed": 12}}))
    code, _, err, result = run(capsys, tmp_path, *runs.values(), *flags)
    assert code == 0 and not any("warning" in line for line in err)
    assert [(s["seed"], s["seed_from"], s["pooled"]) for s in result["inputs"]] == [
        (11, "args.json", "seed 11"),
        (12, "trainer_state.json", "seed 12"),
    ]
    assert "seed 11 (from args.json)" in err[0] and "seed 12 (from trainer_state.json)" in err[1]
    df, _ = load_points_with_sources(list(runs.values()), kl_per_token=LENGTH, pool_runs="seeds")
    assert sorted(df["seed"].unique()) == [11, 12] and "run" not in df.columns
    # two runs recording one seed are not two seeds: said, and keyed by name
    (runs["grpo_s2"] / "args.json").write_text(json.dumps({"seed": 11}))
    state.write_text(json.dumps({k: v for k, v in json.loads(state.read_text()).items() if k != "trial_params"}))
    _, _, err, _ = run(capsys, tmp_path, *runs.values(), *flags)
    assert any("warning" in line and "the same seed in grpo_s1 (11), grpo_s2 (11)" in line for line in err)
    # a FIFO, or a file that is not JSON, is no argument file: skipped, never blocked on
    (runs["grpo_s1"] / "args.json").unlink()
    os.mkfifo(runs["grpo_s1"] / "args.json")
    (runs["grpo_s2"] / "args.json").write_text("seed = 11\n")
    code, _, err, _ = run(capsys, tmp_path, *runs.values(), *flags)
    assert code == 0 and any("grpo_s1, grpo_s2: no seed recorded" in line for line in err)
    assert not list(tmp_path.glob("unpickled_*"))  # training_args.bin was never loaded
    pickle.loads((runs["grpo_s1"] / "training_args.bin").read_bytes()).close()  # the payload works when loaded
    assert (tmp_path / "unpickled_grpo_s1").exists()


@pytest.mark.parametrize(
    ("where", "text", "said"),
    [
        ("args.json", '{"seed": ' + "9" * 5000 + "}", "an integer of 5000 digits"),
        ("training_args.json", '{"seed": ' + "9" * 30 + "}", "seed an integer of 30 digits is not a seed"),
        ("args.json", '{"seed": "eleven"}', "seed 'eleven' is not a seed"),
        ("args.json", '{"seed": 1.5}', "seed 1.5 is not a seed"),
        ("hparams.json", '{"seed": true}', "seed True is not a seed"),
        ("checkpoint-50/trainer_state.json", None, "seed [3] is not a seed"),
    ],
)
def test_a_seed_that_is_no_seed_is_bad_input_naming_the_file(capsys, tmp_path, where, text, said):
    """A recorded seed that cannot be a seed (a 5,000-digit integer, text, a fraction) is one line naming the
    file, exit 2: it was read as "no seed" and the run silently keyed by its name (issue 33)."""
    runs = [tmp_path / name for name in ("grpo_s1", "grpo_s2")]
    for d in runs:
        shutil.copytree(REAL / d.name, d)
    (runs[0] / "args.json").write_text(json.dumps({"seed": 1}))
    path = runs[1] / where
    if text is None:  # trial_params.seed of a hyperparameter search's trial
        text = json.dumps({**json.loads(path.read_text()), "trial_params": {"seed": [3]}})
    path.write_text(text)
    flags = ("--kl-per-token", LENGTH, "--pool-runs", "seeds", "--n-boot", "0")
    line = refused(capsys, tmp_path, *runs, *flags)
    assert str(path) in line and said in line, line
    path.write_text(json.dumps({"seed": None} if text.startswith('{"seed"') else json.loads(REAL_STATE.read_text())))
    code, _, err, _ = run(capsys, tmp_path, *runs, *flags)  # null, or no seed: "no seed recorded", as before
    assert code == 0 and any("grpo_s2: no seed recorded" in line for line in err), err


REAL_STATE = REAL / "grpo_s2" / "checkpoint-50" / "trainer_state.json"


def test_tensorboard_args_with_a_huge_integer_name_the_event_file(tmp_path):
    """HF's TensorBoard `args` text with a 5,000-digit seed was read as no arguments at all (no seed, no
    algorithm); now one line naming the event file. Text that is not JSON stays "no arguments"."""
    from core.errors import UsageError
    from ingest.event_logs import _args
    from ingest.log_checks import seed_from_args

    event = tmp_path / "events.out.tfevents.1.host"
    with pytest.raises(UsageError, match=f"{event}: TensorBoard args: invalid JSON value \\(an integer of 5000"):
        _args(('{"seed": ' + "7" * 5000 + ', "run_name": "grpo"}').encode(), event)
    assert _args(b'{"seed": 7, "run_name": "grpo"}', event) == {"seed": 7, "run_name": "grpo"}
    assert _args(b"not json", event) == {}
    with pytest.raises(UsageError, match="x: seed 'a' is not a seed"):
        seed_from_args({"seed": "a"}, "x")
    assert [seed_from_args(a, "x") for a in ({}, {"seed": None}, {"seed": 42.0}, {"seed": -3}, [])] == [
        None,
        None,
        42,
        -3,
        None,
    ]
    assert seed_from_args({"seed": 2**64 - 1}, "x") == 2**64 - 1
    with pytest.raises(UsageError, match="an integer of 20 digits"):
        seed_from_args({"seed": 2**64}, "x")


def test_gold_spread_gives_the_drop_in_sd_and_leaves_intervals_alone(capsys, tmp_path):
    code, _, err, result = run(capsys, tmp_path, REAL, "--kl-per-token", LENGTH, "--n-boot", "0")
    rows = {r["run"]: r for r in result["spread"]}
    fits = {r["run"]: r for r in result["fits"]}
    assert code == 0 and sorted(rows) == ["grpo_s1", "grpo_s2", "rloo_s1"]
    for name, row in rows.items():  # independently: numpy on the logged entries
        h = [e for e in history(REAL / name / "checkpoint-50" / "trainer_state.json") if "kl" in e]
        h.sort(key=lambda e: e["step"])
        sd = float(np.median([e["rewards/gold/std"] for e in h]))
        gold = np.array([e["rewards/gold/mean"] for e in h])
        assert row["gold_sd"] == pytest.approx(sd, rel=1e-12)
        assert row["drop"] == pytest.approx(gold.max() - gold[-1], rel=1e-12)
        assert row["drop_sd"] == pytest.approx((gold.max() - gold[-1]) / sd, rel=1e-12)
        assert row["rmse_sd"] == pytest.approx(fits[name]["rmse"] / sd, rel=1e-12)
    line = next(line for line in err if "gold spread over each step's completions" in line)
    assert f"run=grpo_s1: sd {rows['grpo_s1']['gold_sd']:.3g}" in line
    # the intervals (bootstrap over points) are the same with and without the spread logged
    bare = tmp_path / "bare" / "grpo_s1"
    shutil.copytree(REAL / "grpo_s1", bare)
    state = bare / "checkpoint-50" / "trainer_state.json"
    entries = [{k: v for k, v in e.items() if k != "rewards/gold/std"} for e in history(state)]
    state.write_text(json.dumps({"log_history": entries}))
    flags = ("--kl-per-token", LENGTH, "--n-boot", "200")
    _, _, _, with_sd = run(capsys, tmp_path, REAL / "grpo_s1", *flags)
    _, _, err, without = run(capsys, tmp_path, bare, *flags)
    assert "spread" in with_sd and "spread" not in without and not any("gold spread" in line for line in err)
    for key in ("alpha", "beta", "alpha_ci", "beta_ci", "interval"):
        assert with_sd["fits"][0][key] == without["fits"][0][key]
