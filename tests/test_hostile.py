"""A representative subset of the hostile-input harness (tests/hostile_inputs.py: one case a class, each a
subprocess), and the harness' own checks shown to catch what they must. The whole harness (481 cases, several
minutes on 2 busy cores) runs as a script: `python tests/hostile_inputs.py --jobs 2`."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hostile_inputs as harness  # noqa: E402 - tests/ is not a package

# one case a class: (verb, name) as the harness names them
SUBSET = [
    ("study", "set 'bon.pool_size=1000000000000000'"),  # a config value sizing an allocation
    ("study", "[classes] --set bon.pool_size=1000000001"),  # ... one past its limit
    ("sweep", "[classes] launch 10^6 points"),  # a sweep counted before it is expanded
    ("sweep", "status fifo"),  # a FIFO where a JSON file is read
    ("sweep", "[classes] status manifest dotdot"),  # a manifest entry outside its run
    ("verify", "store DONE -> /dev/zero"),  # an endless device where a JSON file is read
    ("verify", "[classes] manifest symlinked_subdir"),  # a manifest through a link out of the run
    ("verify", "[classes] points.parquet zero"),
    ("fit", "--json onto input"),  # an output over the command's input
    ("fit", "[classes] --json onto a hard link to its input"),
    ("fit", "trainer log steps backwards"),  # two histories concatenated
    ("fit", "trainer log kl slightly negative"),  # clipped and said, exit 0
    ("fit", "[classes] log: 5000-digit kl"),  # an integer of any length
    ("fit", "[classes] truncated event file"),
    ("bon", "--json onto device"),  # an output onto a device node
    ("bon", "csv empty completions"),
    ("bon", "[classes] list-valued prompts"),  # prompts keyed by their contents
    ("bon", "[classes] samples outside"),  # an input linked out of the directory
    ("bon", "[classes] JSON lines prompts that print or compare alike"),  # 1, "1", true, [[]], [{}]: 9 prompts
    ("fit", "[classes] an input given twice through a link"),  # read twice, counted twice
    ("fit", "[classes] two runs sharing a directory name"),  # a/grpo_run, b/grpo_run: two curves
    ("figures", "[classes] trainer run"),  # figures of a trainer run: nothing written into it
    ("figures", "[classes] a figure file linked outside"),
]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    sentinel = tmp_path_factory.mktemp("sentinel")
    (sentinel / "keep.txt").write_text("keep")
    return base, sentinel


def test_representative_hostile_cases_are_clean(dirs):
    base, sentinel = dirs
    by_name = {(c[0], c[1]): c for c in harness.cases(base)}
    missing = [k for k in SUBSET if k not in by_name]
    assert not missing, missing
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda k: harness.run_case(by_name[k], base, sentinel), SUBSET))
    unclean = [r for r in results if r[2] != "clean"]
    assert not unclean, unclean


def test_the_harness_catches_a_wrong_exit_a_missing_text_and_an_undeclared_output(dirs):
    base, sentinel = dirs

    def samples(d):
        (d / "s.csv").write_text(harness.samples(harness.good_rows()))
        return ["bon", "s.csv", "--json", "o.json"]

    probes = [
        ("fit", "probe: exit 2, 0 expected", lambda d: ["fit", "missing.csv"], (0,), None, None),
        ("fit", "probe: text never printed", lambda d: ["fit", "--help"], None, "never printed", None),
        ("bon", "probe: an output not declared", samples, None, None, ()),
        ("bon", "probe: the output declared", samples, None, None, ("o.json",)),
    ]
    results = [harness.run_case(p, base, sentinel) for p in probes]
    assert [r[2] for r in results] == ["unclean", "unclean", "unclean", "clean"], results
    assert "expected 0" in results[0][3] and "never printed" in results[1][3] and "beside its outputs" in results[2][3]
