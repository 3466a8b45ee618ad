"""The declared stage graph (study/stages): keys derived from exactly the declared reads, selectors in no
key, unread keys refused, every seed moved by --replicate, old stores refused, pool log-probs kept."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest

from core.config import merge, parse_overrides
from core.errors import UsageError
from overopt.cli import main
from study import stages
from study.config import replicate_config
from study.presets import resolve, tiny
from study.stages.graph import covers, value_at

MICRO = [
    "policy.n_layer=1",
    "policy.d_model=32",
    "labels.n_comparisons=800",
    'ladder.sizes=[{"name":"rm-a","n_layer":1,"d_model":8,"n_head":2},{"name":"rm-b","n_layer":1,"d_model":16,"n_head":2}]',
    "ladder.ensemble_size=2",
    "ladder.data_sizes=[300]",
    "bon.n_prompts=4",
    "bon.pool_size=64",
    "rl.kl_coefs=[0.0,0.1]",
    "rl.proxies=['rm-b']",
    "rl.algos=['ppo','grpo','ppo_constrained','dpo']",  # the optional GRPO, constrained PPO, DPO stages: reads checked
    "rl.objectives=['single','uwo']",  # and an ensemble objective (uwo reads bon.uwo_lambda)
]

# values for tuples that are empty in the micro config (a generic change needs an element to change)
FILL = {
    "rl.proxies": ("rm-a",),
    "ladder.data_sweep_sizes": ("rm-a",),
    "ladder.data_sizes": (301,),
    "calibration_replicates": (7,),
    "selection.poisson_mus": (3.0,),
}


def _leaves(obj, prefix=""):
    """(dotted path, value) of every leaf field, found by walking the dataclasses (not from any table)."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            yield from _leaves(getattr(obj, f.name), f"{prefix}.{f.name}" if prefix else f.name)
    elif isinstance(obj, tuple) and obj and dataclasses.is_dataclass(obj[0]):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def _changed(v, path):
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v * 1.5 + 0.25
    if v is None:
        return 1.0
    if isinstance(v, str):
        return v + "z"
    if isinstance(v, tuple):
        if not v:
            return FILL[path]
        return (_changed(v[0], path),) + v[1:]
    raise AssertionError(f"no change defined for {path}={v!r}")


def _set(cfg, path, value):
    """`cfg` with dotted `path` (indices allowed) set to `value`, bypassing validation (ids only)."""
    head, _, rest = path.partition(".")
    name, idx = (head[: head.index("[")], int(head[head.index("[") + 1 : -1])) if "[" in head else (head, None)
    cur = getattr(cfg, name)
    if idx is not None:
        item = _set(cur[idx], rest, value) if rest else value
        new = cur[:idx] + (item,) + cur[idx + 1 :]
    else:
        new = _set(cur, rest, value) if rest else value
    out = copy.copy(cfg)  # no __post_init__: a changed field need not make a valid config to change an id
    object.__setattr__(out, name, new)
    return out


def _ids(cfg):
    return {i.label: i.id for i in stages.plan(cfg)}


@pytest.fixture(scope="module", params=[False, True], ids=["scratch", "backbones"])
def micro(request):
    return resolve("tiny-flattery", MICRO + [f"ladder.backbone={request.param}"])


def test_changed_field_redoes_exactly_its_readers_and_their_downstream(micro):
    base_plan = stages.plan(micro)
    base = {i.label: i.id for i in base_plan}
    seed_paths = [p for p, _ in _leaves(micro) if "seed" in p.rsplit(".", 1)[-1]]
    checked = 0
    for path, value in _leaves(micro):
        new_cfg = _set(micro, path, _changed(value, path))
        new_plan = stages.plan(new_cfg)
        new = {i.label: i.id for i in new_plan}
        role = stages.role(path)
        common = base.keys() & new.keys()
        changed = {label for label in common if base[label] != new[label]}
        if path == "replicate":  # every seed moves: whatever reads one, and everything downstream
            readers = set().union(*(stages.readers(new_plan, p) for p in seed_paths))
        else:
            readers = stages.readers(new_plan, path)
        expected = stages.downstream(new_plan, readers) & common
        assert changed == expected, (path, sorted(changed ^ expected))
        if not any(covers(s, path) for s in stages.SELECTORS):
            assert base.keys() == new.keys(), path  # only selectors change which instances exist
        if role is None:
            assert path in stages.UNUSED and not changed, path
        elif role == "stage":
            assert readers, f"{path}: declared read by a stage, but no instance of the micro study reads it"
        elif role == "finish":
            assert not changed and base.keys() == new.keys() or path == "replicate", path
        checked += 1
    assert checked == len(list(_leaves(micro))) > 100


def test_selectors_are_in_no_key(micro):
    """Narrowing rl.proxies or dropping the data-size sweep keeps the ids of every instance that stays."""
    base = _ids(micro)
    for overrides in (
        ["rl.proxies=['rm-a','rm-b']"],
        ["rl.proxies=[]"],
        ["ladder.data_sizes=[]"],
        ["rl.enabled=false"],
        ["selection.rules=[]", "selection.hedge_rules=[]"],
    ):
        new = _ids(merge(micro, parse_overrides(overrides)))
        assert new.keys() != base.keys(), overrides
        assert {k: new[k] for k in new.keys() & base.keys()} == {k: base[k] for k in new.keys() & base.keys()}


def test_rl_grid_is_the_only_source_of_kl_coef(capsys):
    assert stages.role("rl.ppo.kl_coef") is None and stages.role("rl.ppo.lr") == "stage"
    with pytest.raises(UsageError, match="rl.ppo.kl_coef"):
        resolve("tiny", ["rl.ppo.kl_coef=0.1"])
    assert main(["study", "--preset", "tiny", "--set", "rl.ppo.kl_coef=0.1", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "rl.kl_coefs" in err and len(err.strip().splitlines()) == 1
    resolve("tiny", ["rl.kl_coefs=[0.0,0.2]", "figures=false", "rl.proxies=['rm-s']"])  # read keys pass


def test_every_seed_like_field_moves_with_the_replicate():
    """The seed-like fields are found by walking the config, not read from study.config.SEED_FIELDS."""
    base = tiny()
    found = [p for p, _ in _leaves(base) if "seed" in p.rsplit(".", 1)[-1]]
    assert {"selection.calibration_seed", "rl.seeds", "bon.seed", "world.seed"} <= set(found)
    assert replicate_config(base) == base  # K = 0 keeps the configured seeds
    one, two = (replicate_config(dataclasses.replace(base, replicate=k)) for k in (1, 2))
    for path in found:
        v0, v1, v2 = value_at(base, path), value_at(one, path), value_at(two, path)
        assert v1 != v0 and v2 != v1, path
    assert replicate_config(dataclasses.replace(base, replicate=1)) == one  # deterministic


def test_a_study_written_before_the_stage_graph_is_refused(tmp_path, capsys):
    out = tmp_path / "old"
    (out / "runs" / "lm-0123456789ab").mkdir(parents=True)
    cfg = resolve("tiny")
    from core.config import to_dict
    from core.store import run_id

    (out / "study.json").write_text(json.dumps({"preset": "tiny", "config_id": run_id(cfg), "config": to_dict(cfg)}))
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert main(["study", "--preset", "tiny", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "version 1" in err and "another --out" in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing written
    # a runs root shared by a sweep: refused by the walk itself
    with pytest.raises(UsageError, match="version-1 run store"):
        stages.check_store(out / "runs")
    fresh = tmp_path / "fresh" / "runs"
    stages.check_store(fresh)
    assert json.loads((fresh / "store.json").read_text()) == {"version": stages.STORE_VERSION}
    stages.check_store(fresh)  # the same version again: accepted


def test_pool_keeps_the_samplers_log_probs_equal_to_a_teacher_forced_pass():
    """pi_init's log-prob of each pool response comes from sampling; a teacher-forced pass at the pool's
    temperature agrees to fp32 tolerance (the ref-logprob stage that recomputed it is gone)."""
    import jax

    from bon.pools import BonConfig, make_pool
    from gold_rm.gold import GoldConfig, GoldRM
    from gold_rm.world import World, WorldConfig
    from lm.model import ModelConfig, init, response_logprobs

    world = World(WorldConfig())
    gold = GoldRM(world, GoldConfig(fluency_samples=500, calib_samples=256))
    mcfg = ModelConfig(vocab_size=world.vocab_size, n_ctx=world.seq_len, n_layer=1, d_model=32, n_head=2)
    graphdef, state = init(mcfg, jax.random.PRNGKey(0))
    for temperature in (1.0, 0.7):
        cfg = BonConfig(n_prompts=3, pool_size=32, temperature=temperature, batch_size=40, seed=5)
        pool = make_pool(world, gold, graphdef, state, cfg, progress=False)
        toks = pool.tokens.astype(np.int32)
        lp = np.asarray(response_logprobs(graphdef, state, toks, pool.prompt_len, temperature))
        teacher = np.where(pool.mask, lp, 0.0).sum(axis=1, dtype=np.float64)
        assert pool.ref_logprob.shape == (3 * 32,) and pool.ref_logprob.dtype == np.float64
        np.testing.assert_allclose(pool.ref_logprob, teacher, rtol=1e-5, atol=1e-4)
        assert np.all(pool.ref_logprob < 0)
