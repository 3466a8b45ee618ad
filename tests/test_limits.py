"""Config values that size an allocation are bounded (study.config.ALLOCATIONS): a typo such as
bon.pool_size=10**15 is refused before anything is built, by --print-config too; every preset fits."""

from __future__ import annotations

import dataclasses
import math

import pytest

from core.errors import UsageError
from overopt.cli import main
from study.config import ALLOCATIONS, config_value, validate
from study.presets import PRESETS, resolve


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_within_the_limits(preset):
    validate(PRESETS[preset]())


@pytest.mark.parametrize("what,keys,limit", ALLOCATIONS, ids=[k for _, k, _ in ALLOCATIONS])
def test_each_bounded_product_is_refused_one_past_its_limit(what, keys, limit):
    cfg = resolve("tiny")
    first, *rest = keys.split()
    others = math.prod(config_value(cfg, k) for k in rest)
    over = limit // others + 1  # the smallest value of the first key whose product passes the limit
    if first == "rl.ppo.batch_size":
        over = limit + 4  # PPO's minibatches (4) must divide it
    with pytest.raises(UsageError, match=rf"'{first}'.*{what}.*{limit:,}"):
        resolve("tiny", [f"{first}={over}"])
    if limit // others >= 1 and keys not in ("world.max_new",):  # at the limit itself: no allocation error
        try:
            resolve("tiny", [f"{first}={limit // others}"])
        except UsageError as e:
            assert "may allocate" not in str(e)


def test_proxy_sizes_and_the_rl_grid_are_bounded():
    cfg = resolve("tiny")
    wide = dataclasses.replace(cfg.ladder.sizes[0], d_model=65540, n_head=4)
    with pytest.raises(UsageError, match=r"ladder.sizes\[0\].d_model.*65,536"):
        validate(dataclasses.replace(cfg, ladder=dataclasses.replace(cfg.ladder, sizes=(wide,))))
    rl = dataclasses.replace(cfg.rl, kl_coefs=tuple(i / 1000 for i in range(101)), seeds=tuple(range(100)))
    with pytest.raises(UsageError, match="10,100 RL grid points"):
        validate(dataclasses.replace(cfg, rl=rl))


def test_print_config_refuses_a_huge_pool_in_one_line(capsys, tmp_path):
    assert main(["study", "--preset", "tiny", "--set", f"bon.pool_size={10**15}", "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bon.pool_size" in err[0] and "1,000,000,000" in err[0]
