"""bf16 compute on every stage (issue 36, item 4): `compute_dtype=bfloat16` runs the dense layers' matmuls of
the policy and the proxies in bfloat16 in pretraining, sampling, proxy training and scoring, and PPO, while
parameters and optimizer state stay float32; off (float32, the default) it is in no stage key and no config
id, so float32 studies keep their ids and, their code path unchanged, their numbers.

The bf16 micro study (the micro config of tests/micro.py with compute_dtype=bfloat16, no figures) is compared
with the session's float32 one (conftest.micro_study): the same rows, and every gold, proxy and KL column
within the tolerances below (measured on this CPU; see BF16_TOL)."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pandas as pd
import pytest
from micro import MICRO, study_argv

from core.config import merge, parse_overrides
from core.errors import UsageError
from core.store import canonical_json, run_id
from overopt.cli import main
from study import stages
from study.config import StudyConfig, validate
from study.presets import resolve

BF16_TOL = {"gold": 0.05, "proxy": 0.10, "kl": 0.05}
"""Largest absolute difference bf16 - float32 of a points column, relative to the float32 column's range
(max - min over the rows): bf16 keeps 8 bits of mantissa, and PPO's updates compound the difference.
Measured on this CPU (824 rows: 800 best-of-n, 24 RL): gold 0.016, proxy 0.048 (an RL row; best-of-n 0.011),
kl 0.006; with the sampler's KV cache in bfloat16 (`lm.model.GPT.init_cache`): gold 0.018, proxy 0.048 (an RL
row; best-of-n 0.006), kl 0.005. The tolerances leave a factor of 2 to 3."""


def _cfg(*extra):
    return resolve("tiny-flattery", list(MICRO) + list(extra))


def test_float32_is_in_no_key_and_bfloat16_in_every_model_stage_key():
    off, on = _cfg(), _cfg("compute_dtype=bfloat16")
    assert off.compute_dtype == "float32" and on.compute_dtype == "bfloat16"
    # off: the config id as before the option (left out of ids at its default), no stage key holds it
    assert "compute_dtype" not in canonical_json(off) and "compute_dtype" in canonical_json(on)
    base = stages.plan(off)
    assert all("compute_dtype" not in json.dumps(i.key) for i in base)
    # on: every instance but the gold's carries it (and so every id downstream of the policy changes)
    new = {i.label: i for i in stages.plan(on)}
    assert run_id(on) != run_id(off)
    for i in base:
        if i.stage.name in stages.FLOAT32_STAGES:
            assert new[i.label].id == i.id and "compute_dtype" not in new[i.label].params
        else:
            assert new[i.label].params["compute_dtype"] == "bfloat16" and new[i.label].id != i.id, i.label
    assert any(i.stage.name == "rl" for i in base) and any(i.stage.name == "proxy" for i in base)


def test_bad_compute_dtype_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(UsageError, match="compute_dtype"):
        validate(merge(StudyConfig(), parse_overrides(["compute_dtype=float16"])))
    assert main(study_argv(tmp_path / "s", "--set", "compute_dtype=float16")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compute_dtype" in err[0]


@pytest.fixture(scope="module")
def bf16_study(tmp_path_factory, pytestconfig):
    out = tmp_path_factory.mktemp("bf16") / "s"
    capman = pytestconfig.pluginmanager.getplugin("capturemanager")
    with open(out.parent / "study.log", "w") as log:
        with capman.global_and_fixture_disabled(), contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
            assert main(study_argv(out, "--set", "compute_dtype=bfloat16", "--set", "figures=false")) == 0
    return out


def _checkpoint_dtypes(path) -> set[str]:
    import orbax.checkpoint as ocp

    ckptr = ocp.StandardCheckpointer()
    try:
        meta = ckptr.metadata(path).item_metadata
    finally:
        ckptr.close()
    return {str(m.dtype) for m in meta.values()}


def test_bf16_study_keeps_float32_state_and_points_within_tolerance(bf16_study, micro_study):
    runs = bf16_study / "runs"
    # parameters (and, in the RL checkpoint, the Adam moments) stay float32 in every stage that trains
    for pattern in ("lm-*/state", "proxy-*/proxy/state", "rl-*/checkpoint"):
        found = sorted(runs.glob(pattern))
        assert found, pattern
        for p in found:
            dtypes = _checkpoint_dtypes(p)
            assert dtypes <= {"float32", "int32", "uint32", "bool"} and "float32" in dtypes, (p, dtypes)
    # the bf16 model really ran: the stored proxy config says so
    meta = json.loads(next(runs.glob("proxy-*/proxy/proxy.json")).read_text())
    assert meta["model_cfg"]["compute_dtype"] == "bfloat16"

    a = pd.read_parquet(micro_study / "points.parquet")
    b = pd.read_parquet(bf16_study / "points.parquet")
    assert len(a) == len(b) and list(a.columns) == list(b.columns)
    worst = {}
    for col, tol in BF16_TOL.items():
        x, y = a[col].to_numpy(float), b[col].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        assert ok.sum() > 10 and (np.isfinite(x) == np.isfinite(y)).all(), col
        scale = np.ptp(x[ok])
        worst[col] = float(np.max(np.abs(x[ok] - y[ok])) / scale)
        assert worst[col] <= tol, (col, worst[col])
    assert max(worst.values()) > 0  # bf16 changed the numbers: the option reached the computation
