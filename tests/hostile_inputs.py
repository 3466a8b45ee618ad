"""Hostile input at every verb, each case a subprocess in its own directory (run as a script; not collected).

    python tests/hostile_inputs.py [--jobs 2] [--only SUBSTRING]

A case is clean when the command
- exits 0, or exits 2 with exactly one stderr line "overopt: error: ..." (no traceback, no internal error), or
  (verify, sweep status) exits 1 reporting damage or failed points, as documented;
- finishes within the timeout (a FIFO or an endless device never blocks it);
- leaves its inputs unchanged, writes nothing outside its directory (a sentinel directory, the case's own
  "outside" directory its links may point into, and /dev/null are checked) and leaves no half-written file
  (".*.tmp");
- where the case says so: exits with one of its codes, prints its text (`must`), writes only its declared
  outputs (a JSON output parses).
The cases are this file's own and, named "[classes] ...", the hostile-classes branch's ported by class
(tests/hostile_classes.py; those repeating a case here are listed there and not run twice): 481 in all
(last run: 474 clean, 7 skipped: a NUL byte cannot be passed to a process).
Prints one line per unclean case and the counts by verb. Exit 0 when every case is clean. tests/test_hostile.py
runs one case a class in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures_trl"
TIMEOUT = 60


# ----------------------------------------------------------------------------------------------- inputs
def samples(rows) -> str:
    return "prompt,proxy,gold,response\n" + "\n".join(",".join(str(x) for x in r) for r in rows) + "\n"


def good_rows(n_prompts=3, n=8, seed=0):
    import random

    rng = random.Random(seed)
    return [
        (f"p{p}", round(rng.random(), 6), round(rng.random(), 6), f"r{i}") for p in range(n_prompts) for i in range(n)
    ]


def points_csv(kl, gold, method="bon", extra=""):
    head = "method,kl,gold,rm_params" + (f",{extra}" if extra else "")
    return head + "\n" + "\n".join(f"{method},{k},{g},1000" for k, g in zip(kl, gold)) + "\n"


def history(entries) -> str:
    return json.dumps({"log_history": entries})


def trl_entry(step, kl, gold, length=20.0):
    return {
        "step": step,
        "kl": kl,
        "rewards/gold/mean": gold,
        "rewards/proxy/mean": gold + 0.1 if isinstance(gold, float) else gold,
        "completions/mean_length": length,
    }


def cases(base: Path | None = None):
    """(verb, name, setup(dir) -> argv, codes, must, outputs): `codes` the exits that are right (None: 0 or 2,
    1 for verify and sweep), `must` a text the output must hold, `outputs` the paths (relative to the case's
    directory) an exit 0 or 1 may write (None: anything new inside it). `base`: where the ported classes'
    template goes (None: without them)."""
    out = []

    def add(verb, name, setup, codes=None, must=None, outputs=None):
        out.append((verb, name, setup, codes, must, outputs))

    # -- study --print-config: bad --set values
    overrides = [
        "bon.pool_size=1000000000000000",
        "bon.pool_size=0",
        "bon.pool_size=-5",
        "bon.pool_size=nan",
        "bon.pool_size=1e400",
        "bon.pool_size=" + "9" * 5000,
        "bon.n_prompts=true",
        "labels.n_comparisons=1e12",
        "labels.flip_frac=0.7",
        "labels.flip_frac=-0.1",
        "world.max_new=100000",
        "world.n_symbols=1000000",
        "world.tasks=['nope']",
        "world.tasks=[]",
        "world.tasks=" + "[" * 3000,
        "rl.kl_coefs=[]",
        "rl.seeds=[0,0]",
        "rl.seeds=[-1]",
        "rl.ppo.updates=100000000",
        "rl.ppo.kl_coef=0.1",
        "rl.ppo.batch_size=7",
        "policy.d_model=100000",
        "policy.n_layer=5000",
        "policy.n_head=3",
        "ladder.train.pool=max",
        "ladder.train.lr=0",
        "ladder.data_sizes=[0]",
        "no.such.key=1",
        "bon=3",
        "gold.kind=nope",
        "gold.kind=learned",
        "selection.rules=['x']",
        "replicate=-1",
        "rl.proxies=['ghost']",
        "bon.objectives=['bad']",
        "world.k=0",
        "labels.temperature=0",
        "rl.prompt_bank=1000000000",
        "bon.batch_size=100000000",
        "rl.ppo.eval_batch=0",
        "ladder.train.epochs=0",
        "world.seed=1.5",
        "bon.temperature=-1",
        "labels.n_comparisons=" + "1" * 4400,
        "bon.pool_size=\x00",
    ]
    for ov in overrides:
        add("study", f"set {ov[:40]!r}", lambda d, ov=ov: ["study", "--preset", "tiny", "--set", ov, "--print-config"])
    for preset in ("tiny", "small", "paper", "tiny-bank", "nope", "../x"):
        add("study", f"preset {preset}", lambda d, p=preset: ["study", "--preset", p, "--print-config"])
    add(
        "study",
        "out is a fifo",
        lambda d: (os.mkfifo(d / "f"), ["study", "--preset", "tiny", "--out", str(d / "f"), "--resume"])[1],
    )
    add(
        "study",
        "out is a file",
        lambda d: ((d / "f").write_text("x"), ["study", "--preset", "tiny", "--out", str(d / "f"), "--resume"])[1],
    )

    def study_marker(d, text):
        (d / "s").mkdir()
        (d / "s" / "study.json").write_text(text)
        return ["study", "--preset", "tiny", "--out", str(d / "s"), "--resume", "--set", "rl.enabled=false"]

    for name, text in (
        ("garbage", "{{"),
        ("list", "[]"),
        ("huge int", '{"config_id": ' + "7" * 5000 + "}"),
        ("empty", ""),
    ):
        add("study", f"resume study.json {name}", lambda d, t=text: study_marker(d, t))
    add(
        "study",
        "resume study.json -> /dev/zero",
        lambda d: (
            (d / "s").mkdir(),
            os.symlink("/dev/zero", d / "s" / "study.json"),
            ["study", "--preset", "tiny", "--out", str(d / "s"), "--resume"],
        )[2],
    )

    # -- sweep launch --dry-run: specs
    specs = {
        "1e6 points": 'preset = "tiny"\n[axes]\n'
        + "\n".join(
            f'"{k}" = {list(range(10))}'
            for k in (
                "bon.seed",
                "labels.seed",
                "rl.prompt_seed",
                "world.seed",
                "policy.seed",
                "selection.calibration_seed",
            )
        ),
        "1e12 points": 'preset = "tiny"\n[axes]\n'
        + "\n".join(
            f'"{k}" = {list(range(100))}'
            for k in (
                "bon.seed",
                "labels.seed",
                "rl.prompt_seed",
                "world.seed",
                "policy.seed",
                "selection.calibration_seed",
            )
        ),
        "bad preset": 'preset = "nope"\n',
        "no preset": "[axes]\n",
        "unknown axis": 'preset = "tiny"\n[axes]\n"no.such" = [1]\n',
        "empty axis": 'preset = "tiny"\n[axes]\n"bon.seed" = []\n',
        "zip mismatch": 'preset = "tiny"\n[[zip]]\n"bon.seed" = [1, 2]\n"labels.seed" = [1]\n',
        "huge int": 'preset = "tiny"\n[axes]\n"bon.seed" = [' + "9" * 5000 + "]\n",
        "deep": 'preset = "tiny"\nx = ' + "[" * 2000 + "]" * 2000 + "\n",
        "not toml": "{{{{",
        "duplicate points": 'preset = "tiny"\n[axes]\n"bon.seed" = [1, 1]\n',
        "pool 1e15": 'preset = "tiny"\n[base]\nbon = { pool_size = 1000000000000000 }\n',
        "exclude nothing": 'preset = "tiny"\n[axes]\n"bon.seed" = [1, 2]\n[[exclude]]\nname = "x"\n"bon.seed" = 3\n',
        "unknown top": 'preset = "tiny"\nfoo = 1\n',
        "kl_coef": 'preset = "tiny"\n[base]\nrl = { ppo = { kl_coef = 0.1 } }\n',
        "nan": 'preset = "tiny"\n[axes]\n"labels.flip_frac" = [nan]\n',
        "inf": 'preset = "tiny"\n[axes]\n"labels.flip_frac" = [inf]\n',
        "name traversal": 'preset = "tiny"\nname = "../../x"\n',
        "string seed": 'preset = "tiny"\n[axes]\n"bon.seed" = ["a"]\n',
        "ok small": 'preset = "tiny"\n[axes]\n"bon.seed" = [1, 2]\n',
    }
    for name, text in specs.items():
        add(
            "sweep",
            f"spec {name}",
            lambda d, t=text: (
                (d / "s.toml").write_text(t),
                ["sweep", "launch", str(d / "s.toml"), "--out", str(d / "o"), "--dry-run"],
            )[1],
        )
    add(
        "sweep",
        "spec non-utf8",
        lambda d: (
            (d / "s.toml").write_bytes(b'preset = "\xff"\n'),
            ["sweep", "launch", str(d / "s.toml"), "--out", str(d / "o"), "--dry-run"],
        )[1],
    )
    add(
        "sweep",
        "spec is a fifo",
        lambda d: (os.mkfifo(d / "s.toml"), ["sweep", "launch", str(d / "s.toml"), "--out", str(d / "o"), "--dry-run"])[
            1
        ],
    )
    add(
        "sweep",
        "spec -> /dev/zero",
        lambda d: (
            os.symlink("/dev/zero", d / "s.toml"),
            ["sweep", "launch", str(d / "s.toml"), "--out", str(d / "o"), "--dry-run"],
        )[1],
    )

    def status(d, text=None, special=None):
        (d / "w").mkdir()
        if special == "fifo":
            os.mkfifo(d / "w" / "sweep.json")
        elif special == "zero":
            os.symlink("/dev/zero", d / "w" / "sweep.json")
        elif text is not None:
            (d / "w" / "sweep.json").write_text(text)
        return ["sweep", "status", str(d / "w")]

    for name, text in (
        ("garbage", "{{"),
        ("list", "[]"),
        ("no points", "{}"),
        ("points not list", '{"points": 3}'),
        ("point not object", '{"points": [3]}'),
        ("id traversal", '{"points": [{"id": "../../etc", "values": {}}]}'),
        ("id absolute", '{"points": [{"id": "/etc", "values": {}}]}'),
        ("huge int", '{"points": [], "n": ' + "1" * 5000 + "}"),
        ("ok empty", '{"points": []}'),
        ("values not dict", '{"points": [{"id": "a", "values": 3}]}'),
    ):
        add("sweep", f"status {name}", lambda d, t=text: status(d, t))
    add("sweep", "status fifo", lambda d: status(d, special="fifo"))
    add("sweep", "status /dev/zero", lambda d: status(d, special="zero"))
    add("sweep", "status no sweep", lambda d: status(d))

    # -- verify: damaged stores
    def store(d, damage):
        sys.path.insert(0, str(ROOT))
        from core.store import Run

        s = d / "s"
        (s / "runs").mkdir(parents=True)
        run = Run.open(s / "runs", {"x": 1}, prefix="r")
        (run.path / "t.json").write_text('{"a": 1}')
        run.mark_done({})
        (s / "study.json").write_text(json.dumps({"runs": [run.id]}))
        done = json.loads((run.path / "DONE").read_text())
        if damage == "forged empty":
            done["manifest"]["files"] = {}
        elif damage == "outside":
            done["manifest"]["files"]["../../../etc/passwd"] = {"size": 1, "sha256": "0"}
        elif damage == "malformed entry":
            done["manifest"]["files"]["t.json"] = "x"
        elif damage == "manifest not dict":
            done["manifest"] = 3
        elif damage == "files list":
            done["manifest"]["files"] = ["t.json"]
        elif damage == "huge int":
            (run.path / "DONE").write_text('{"x": ' + "1" * 5000 + "}")
            done = None
        elif damage == "DONE fifo":
            (run.path / "DONE").unlink()
            os.mkfifo(run.path / "DONE")
            done = None
        elif damage == "DONE -> /dev/zero":
            (run.path / "DONE").unlink()
            os.symlink("/dev/zero", run.path / "DONE")
            done = None
        elif damage == "table fifo":
            (run.path / "t.json").unlink()
            os.mkfifo(run.path / "t.json")
        elif damage == "symlinked run":
            os.symlink(d, s / "runs" / "other")
        elif damage == "runs as file":
            shutil.rmtree(s / "runs")
            (s / "runs").write_text("x")
            return ["verify", str(s)]
        elif damage == "zero-row points":
            import pandas as pd

            pd.DataFrame({"kl": [], "gold": []}).to_parquet(s / "points.parquet")
        elif damage == "study.json fifo":
            (s / "study.json").unlink()
            os.mkfifo(s / "study.json")
        elif damage == "study.json -> /dev/zero":
            (s / "study.json").unlink()
            os.symlink("/dev/zero", s / "study.json")
        elif damage == "fits.json huge int":
            (s / "fits.json").write_text('{"a": ' + "2" * 5000 + "}")
        elif damage == "truncated table":
            (run.path / "t.json").write_text('{"a"')
        elif damage == "extra file":
            (run.path / "extra.json").write_text("{}")
        if done is not None:
            (run.path / "DONE").write_text(json.dumps(done))
        return ["verify", str(s)]

    for damage in (
        "none",
        "forged empty",
        "outside",
        "malformed entry",
        "manifest not dict",
        "files list",
        "huge int",
        "DONE fifo",
        "DONE -> /dev/zero",
        "table fifo",
        "symlinked run",
        "runs as file",
        "zero-row points",
        "study.json fifo",
        "study.json -> /dev/zero",
        "fits.json huge int",
        "truncated table",
        "extra file",
    ):
        add("verify", f"store {damage}", lambda d, x=damage: store(d, x))
    add("verify", "not a dir", lambda d: ((d / "f").write_text("x"), ["verify", str(d / "f")])[1])
    add("verify", "empty dir", lambda d: ((d / "e").mkdir(), ["verify", str(d / "e")])[1])

    # -- bon: samples
    rows = good_rows()
    bon_tables = {
        "good": samples(rows),
        "empty completions": samples([(p, a, b, "") for p, a, b, _ in rows]),
        "NA text": samples([(p, a, b, "NA") for p, a, b, _ in rows]).replace("p0", "None"),
        "0/1 gold": samples([(p, a, int(b > 0.5), r) for p, a, b, r in rows]),
        "constant gold": samples([(p, a, 1.0, r) for p, a, b, r in rows]),
        "all tied proxy": samples([(p, 0.5, b, r) for p, a, b, r in rows]),
        "nan proxy": samples([(p, "nan", b, r) for p, a, b, r in rows]),
        "inf gold": samples([(p, a, "inf", r) for p, a, b, r in rows]),
        "huge int gold": samples([(p, a, "9" * 5000, r) for p, a, b, r in rows]),
        "no rows": "prompt,proxy,gold\n",
        "missing gold": "prompt,proxy\np,1\n",
        "one response a prompt": samples([(f"p{i}", i / 10, i / 7, "r") for i in range(5)]),
        "numeric prompts 1 and '1'": samples([(1 if i % 2 else '"1"', i / 10, i / 7, "r") for i in range(16)]),
        "quoted commas": samples([(f'"p,{p}"', a, b, r) for p, a, b, r in rows]),
        "string proxy": samples([(p, "x", b, r) for p, a, b, r in rows]),
        "negative values": samples([(p, -a, -b, r) for p, a, b, r in rows]),
        "duplicate column": "prompt,proxy,proxy,gold\np,1,2,3\n",
        "binary garbage": None,
    }
    for name, text in bon_tables.items():

        def setup(d, t=text, name=name):
            if t is None:
                (d / "s.csv").write_bytes(os.urandom(300))
            else:
                (d / "s.csv").write_text(t)
            return ["bon", str(d / "s.csv"), "--json", str(d / "o.json")]

        add("bon", f"csv {name}", setup)
    for fmt in ("jsonl", "parquet"):

        def setup_fmt(d, fmt=fmt, kind="good"):
            import pandas as pd

            df = pd.DataFrame(rows, columns=["prompt", "proxy", "gold", "response"])
            if kind == "list prompts":
                df["prompt"] = [[1, 2, i % 3] for i in range(len(df))]
            (
                df.to_json(d / f"s.{fmt}", orient="records", lines=True)
                if fmt == "jsonl"
                else df.to_parquet(d / f"s.{fmt}")
            )
            return ["bon", str(d / f"s.{fmt}"), "--points", str(d / "p.csv")]

        add("bon", f"{fmt} good", setup_fmt)
        add("bon", f"{fmt} list prompts", lambda d, fmt=fmt, f=setup_fmt: f(d, fmt, "list prompts"))
    add(
        "bon",
        "big pool one prompt",
        lambda d: (
            (d / "s.csv").write_text(samples([("p", i % 997 / 997, (i * 7) % 991 / 991, "r") for i in range(200000)])),
            ["bon", str(d / "s.csv"), "--rules", "max"],
        )[1],
    )
    outputs = ("input", "fifo", "symlink", "dir", "device", "dangling")

    def out_case(d, verb, kind):
        (d / "s.csv").write_text(samples(rows))
        (d / "pts.csv").write_text(points_csv([0, 0.5, 1, 1.5, 2, 3], [0, 0.3, 0.5, 0.55, 0.5, 0.3]))
        src = d / ("s.csv" if verb == "bon" else "pts.csv")
        target = {
            "input": src,
            "fifo": d / "o.fifo",
            "symlink": d / "o.link",
            "dir": d / "o.dir",
            "device": d / "o.dev",
            "dangling": d / "o.dangling",
        }[kind]
        if kind == "fifo":
            os.mkfifo(target)
        elif kind == "symlink":
            (d / "victim.json").write_text("keep")
            os.symlink(d / "victim.json", target)
        elif kind == "dir":
            target.mkdir()
        elif kind == "device":
            os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        elif kind == "dangling":
            os.symlink(d / "nowhere" / "x.json", target)
        flag = "--json"
        return [verb, str(src), flag, str(target)] + (["--method", "bon"] if verb == "fit" else [])

    for verb in ("bon", "fit"):
        for kind in outputs:
            add(verb, f"--json onto {kind}", lambda d, v=verb, k=kind: out_case(d, v, k))

    # -- fit: points tables and trainer logs
    kl = [0, 0.5, 1, 1.5, 2, 3]
    gold = [0, 0.3, 0.5, 0.55, 0.5, 0.3]
    tables = {
        "good bon": points_csv(kl, gold),
        "good rl": points_csv(kl, gold, "rl"),
        "negative kl": points_csv([-1] + kl[1:], gold),
        "nan gold": points_csv(kl, ["nan"] + gold[1:]),
        "inf kl": points_csv(["inf"] + kl[1:], gold),
        "one point": points_csv([1], [0.2]),
        "flat": points_csv(kl, [0.3] * 6),
        "all zero kl": points_csv([0] * 6, gold),
        "huge int": points_csv(kl, ["9" * 5000] + gold[1:]),
        "1e300": points_csv(kl, ["1e300"] + gold[1:]),
        "no rows": "method,kl,gold\n",
        "unknown method": points_csv(kl, gold, "dpo?"),
        "missing kl": "method,gold\nbon,1\n",
        "string kl": points_csv(["a"] * 6, gold),
        "empty file": "",
        "only header spaces": "   \n",
        "duplicated rows": points_csv(kl + kl, gold + gold),
        "mixed methods": points_csv(kl, gold) + "\n".join(f"rl,{k},{g},1000" for k, g in zip(kl, gold)) + "\n",
    }
    for name, text in tables.items():
        add("fit", f"csv {name}", lambda d, t=text: ((d / "p.csv").write_text(t), ["fit", str(d / "p.csv")])[1])
    logs = {
        "good": [trl_entry(i, 0.01 * i, 0.1 * i) for i in range(1, 12)],
        "kl slightly negative": [trl_entry(1, -0.001, 0.0)] + [trl_entry(i, 0.01 * i, 0.1 * i) for i in range(2, 12)],
        "kl clearly negative": [trl_entry(1, -5.0, 0.0)] + [trl_entry(i, 0.01 * i, 0.1 * i) for i in range(2, 12)],
        "steps backwards": [trl_entry(i, 0.01 * i, 0.1 * i) for i in range(1, 8)]
        + [trl_entry(i, 0.01 * i, 0.1 * i) for i in range(1, 8)],
        "steps repeated": [trl_entry(i // 2, 0.01 * i, 0.1 * i) for i in range(2, 16)],
        "entries not objects": [trl_entry(i, 0.01 * i, 0.1 * i) if i % 2 else 3 for i in range(1, 16)],
        "huge step": [trl_entry(10**30, 0.1, 0.1)] + [trl_entry(i, 0.01 * i, 0.1 * i) for i in range(1, 8)],
        "no gold": [{"step": i, "kl": 0.1 * i} for i in range(1, 8)],
        "empty": [],
        "nan kl": [trl_entry(i, float("nan") if i == 3 else 0.01 * i, 0.1 * i) for i in range(1, 10)],
        "string gold": [trl_entry(i, 0.01 * i, "x") for i in range(1, 10)],
        "zero length": [trl_entry(i, 0.01 * i, 0.1 * i, length=0) for i in range(1, 10)],
    }
    for name, entries in logs.items():

        def setup_log(d, e=entries):
            (d / "run").mkdir()
            (d / "run" / "trainer_state.json").write_text(history(e).replace("NaN", "NaN"))
            return ["fit", str(d / "run"), "--kl-per-token", "completions/mean_length"]

        add("fit", f"trainer log {name}", setup_log)
    add(
        "fit",
        "trainer_state huge int",
        lambda d: (
            (d / "run").mkdir(),
            (d / "run" / "trainer_state.json").write_text('{"log_history": [{"step": ' + "1" * 5000 + "}]}"),
            ["fit", str(d / "run")],
        )[2],
    )
    add(
        "fit",
        "trainer_state fifo",
        lambda d: ((d / "run").mkdir(), os.mkfifo(d / "run" / "trainer_state.json"), ["fit", str(d / "run")])[2],
    )
    add(
        "fit",
        "trainer_state -> /dev/zero",
        lambda d: (
            (d / "run").mkdir(),
            os.symlink("/dev/zero", d / "run" / "trainer_state.json"),
            ["fit", str(d / "run")],
        )[2],
    )
    for name in ("grpo_run", "ppo_run", "grpo_beta0"):
        if (FIX / name).exists():
            add(
                "fit",
                f"fixture {name}",
                lambda d, n=name: (
                    shutil.copytree(FIX / n, d / n),
                    ["fit", str(d / n), "--kl-per-token", "completions/mean_length"],
                )[1],
            )
    if (FIX / "trl116").exists():
        add(
            "fit",
            "trl116 parent",
            lambda d: (
                shutil.copytree(FIX / "trl116", d / "t"),
                ["fit", str(d / "t"), "--kl-per-token", "completions/mean_length"],
            )[1],
        )
        add(
            "fit",
            "trl116 pooled seeds",
            lambda d: (
                shutil.copytree(FIX / "trl116", d / "t"),
                [
                    "fit",
                    str(d / "t" / "grpo_s1"),
                    str(d / "t" / "grpo_s2"),
                    "--kl-per-token",
                    "completions/mean_length",
                    "--pool-runs",
                    "seeds",
                ],
            )[1],
        )
    if (FIX / "wandb_kl.csv").exists():
        add(
            "fit",
            "wandb duplicate columns",
            lambda d: (
                (d / "w.csv").write_text(
                    (FIX / "wandb_kl.csv").read_text().replace("grpo-b - train/kl,", "grpo-a - train/kl,", 1)
                ),
                ["fit", str(d / "w.csv")],
            )[1],
        )
    add(
        "fit",
        "truncated event file",
        lambda d: (
            (d / "run").mkdir(),
            (d / "run" / "events.out.tfevents.1.host").write_bytes(os.urandom(64)),
            ["fit", str(d / "run")],
        )[2],
    )
    add(
        "fit",
        "bon --json as input",
        lambda d: (
            (d / "s.csv").write_text(samples(rows)),
            subprocess.run(
                [sys.executable, "-m", "overopt.cli", "bon", str(d / "s.csv"), "--json", str(d / "b.json")],
                cwd=ROOT,
                capture_output=True,
            ),
            ["fit", str(d / "b.json")],
        )[2],
    )

    # -- figures
    for name, text in (
        ("good", points_csv(kl, gold)),
        ("flat", points_csv(kl, [0.3] * 6)),
        ("no rows", "method,kl,gold\n"),
        ("huge int", points_csv(kl, ["9" * 5000] + gold[1:])),
    ):
        add(
            "figures",
            f"csv {name}",
            lambda d, t=text: ((d / "p.csv").write_text(t), ["figures", str(d / "p.csv"), "--out", str(d / "figs")])[1],
        )
    add("figures", "not a study dir", lambda d: ((d / "e").mkdir(), ["figures", str(d / "e")])[1])
    add(
        "figures",
        "out onto a file",
        lambda d: (
            (d / "p.csv").write_text(points_csv(kl, gold)),
            (d / "f").write_text("x"),
            ["figures", str(d / "p.csv"), "--out", str(d / "f")],
        )[2],
    )
    add(
        "figures",
        "--only unknown",
        lambda d: (
            (d / "p.csv").write_text(points_csv(kl, gold)),
            ["figures", str(d / "p.csv"), "--out", str(d / "figs"), "--only", "nope"],
        )[1],
    )

    # -- flags at every verb
    for verb in ("study", "fit", "figures", "sweep", "verify", "bon"):
        add(verb, "unknown flag", lambda d, v=verb: [v, "--no-such-flag"])
        add(verb, "no arguments", lambda d, v=verb: [v])
        add(
            verb,
            "nul in path",
            lambda d, v=verb: [v, "a\x00b"] if v not in ("study", "sweep") else [v, "--out", "a\x00b"],
        )
    ported_cases(add)
    if base is not None:  # the hostile-classes branch's cases, by class, less those above (tests/hostile_classes.py)
        from hostile_classes import register  # here: tests/ is put on sys.path by ported_cases

        register(add, base)
    return out


def ported_cases(add):
    """Cases ported from the hostile-classes branch (benchmarks/hostile_cases.py) for the classes fixed as
    classes: outputs checked up front and never over a file of an input directory; FIFO markers; dangling or
    escaping links at DONE and top tables; symlinked run dirs; ingest reads. `codes`: the exits that are right."""
    sys.path.insert(0, str(ROOT / "tests"))

    def study(d):
        from demo_data import write_demo

        write_demo(d / "study")
        return d / "study"

    for rel in ("points.parquet", "fits.json", "study.json"):
        add("fit", f"--json onto the study's {rel}", lambda d, r=rel: ["fit", str(study(d)), "--n-boot", "0",
            "--json", str(d / "study" / r)], codes=(2,))  # fmt: skip
    for kind in ("fifo", "zero", "outside"):

        def out_dir(d, k=kind):
            s = study(d)
            {"fifo": lambda: os.mkfifo(d / "figs"), "zero": lambda: os.symlink("/dev/zero", d / "figs"),
             "outside": lambda: os.symlink("/etc/hostname", d / "figs")}[k]()  # fmt: skip
            return ["figures", str(s), "--only", "predicted_peaks", "--no-report", "--out", str(d / "figs")]

        add("figures", f"--out onto {kind}", out_dir, codes=(2,))
        add("study", f"--out onto {kind} (ported)", lambda d, k=kind: (out_dir(d, k), ["study", "--out", str(d /
            "figs")])[1], codes=(2,))  # fmt: skip
    for rel in ("fits.json", "study.json", "points.parquet"):
        for kind in ("fifo", "zero"):

            def shaped(d, r=rel, k=kind):
                s = study(d)
                (s / r).unlink()
                os.mkfifo(s / r) if k == "fifo" else os.symlink("/dev/zero", s / r)
                return ["figures", str(s), "--only", "predicted_peaks", "--no-report", "--out", str(d / "figs")]

            add("figures", f"{rel} {kind}", shaped, codes=(2,))

    def sweep(d, marker=None, link=None):
        w = d / "w"
        (w / "points" / "p1").mkdir(parents=True)
        (w / "runs").mkdir()
        (w / "sweep.json").write_text('{"points": [{"id": "p1", "values": {}}]}')
        if marker:
            os.mkfifo(w / "points" / "p1" / marker)
        if link:
            os.symlink(d, w / "runs" / "linked")
        return ["sweep", "status", str(w)]

    for marker in ("FAILED", "RUNNING"):
        add("sweep", f"status {marker} fifo", lambda d, m=marker: sweep(d, marker=m), codes=(0,))
    add("sweep", "status symlinked run dir", lambda d: sweep(d, link=True), codes=(0,))

    def store(d, what):
        from core.store import Run

        s = d / "s"
        run = Run.open(s / "runs", {"x": 1}, prefix="r")
        run.mark_done({})
        (s / "study.json").write_text(json.dumps({"runs": [run.id]}))
        if what == "DONE dangling":
            (run.path / "DONE").unlink()
            os.symlink("nowhere", run.path / "DONE")
        elif what == "fits.json dangling":
            os.symlink("nowhere", s / "fits.json")
        elif what == "fits.json outside":
            os.symlink("/etc/hostname", s / "fits.json")
        return ["verify", str(s)]

    for what in ("DONE dangling", "fits.json dangling", "fits.json outside"):
        add("verify", f"store {what}", lambda d, w=what: store(d, w), codes=(1,))
    for name, make in (("fifo", lambda p: os.mkfifo(p)), ("/dev/zero", lambda p: os.symlink("/dev/zero", p))):
        for fname in ("log.jsonl", "p.csv", "p.parquet"):
            add("fit", f"{fname} {name}", lambda d, m=make, f=fname: (m(d / f), ["fit", str(d / f)])[1], codes=(2,))


# ----------------------------------------------------------------------------------------------- running
def digest(path: Path) -> dict:
    out = {}
    for p in sorted(path.rglob("*")):
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p)] = stat.S_IFMT(st.st_mode)
    return out


def run_case(case, base: Path, sentinel: Path):
    verb, name, setup, codes, must, outputs = case
    d = Path(tempfile.mkdtemp(dir=base))
    outside = d.parent / f"{d.name}-outside"  # what a case's links may point into (hostile_classes.outside_of)
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the case directory\n")
    try:
        argv = setup(d)
        if not isinstance(argv, list):
            raise TypeError(f"the case's setup returned {type(argv).__name__}, not an argv list")
    except Exception as e:  # the case could not be set up (not a finding of the tool)
        cleanup(d, outside)
        return verb, name, "skipped", f"setup failed: {type(e).__name__}: {e}"
    before = digest(d)
    sent_before = digest(sentinel)
    out_before = digest(outside)
    try:
        p = subprocess.run(
            [sys.executable, "-m", "overopt.cli", *argv],
            cwd=d,
            capture_output=True,
            timeout=TIMEOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg"},
            stdin=subprocess.DEVNULL,
            errors="replace",
        )
    except subprocess.TimeoutExpired:
        cleanup(d, outside)
        return verb, name, "unclean", f"timed out after {TIMEOUT} s"
    except ValueError as e:  # e.g. a NUL byte in an argument: the OS refuses it before the tool runs
        cleanup(d, outside)
        return verb, name, "skipped", str(e)
    err = [line for line in p.stderr.splitlines() if line.strip()]
    problems = []
    if "Traceback" in p.stderr or "internal error" in p.stderr:
        problems.append("traceback or internal error: " + (err[-1] if err else ""))
    # exit 1 is documented for `verify` (damage found) and `sweep status` (failed points): clean when said plainly
    reported = p.returncode == 1 and verb in ("verify", "sweep") and "internal error" not in p.stderr
    if p.returncode not in (0, 2) and not reported:
        problems.append(f"exit {p.returncode}" + (f" ({err[-1][:160]})" if err else ""))
    if codes is not None and p.returncode not in codes:
        problems.append(f"exit {p.returncode}, expected {'/'.join(map(str, codes))}")
    if p.returncode == 2:
        errors = [line for line in err if line.startswith("overopt: error:") or line.startswith("usage")]
        if len([line for line in err if not line.startswith("[")]) != 1 or not errors:
            problems.append(f"exit 2 with {len(err)} stderr lines: {' | '.join(err)[:200]}")
    after = digest(d)
    changed = [k for k, v in before.items() if after.get(k) != v]
    if changed:
        problems.append(f"an input changed: {changed[:3]}")
    if p.returncode == 2:
        new = [k for k in after if k not in before and not k.endswith("__pycache__")]
        if new:
            problems.append(f"exit 2 but wrote {new[:3]}")
    half = [k for k in after if Path(k).name.startswith(".") and k.endswith(".tmp")]
    if half:
        problems.append(f"half-written {half[:2]}")
    if digest(sentinel) != sent_before or digest(outside) != out_before:
        problems.append("wrote outside its directory")
    if not stat.S_ISCHR(os.stat(os.devnull).st_mode):
        problems.append("/dev/null is no longer a device")
    if p.returncode in (0, 1):
        if must is not None and must not in p.stdout + p.stderr:
            problems.append(f"the output lacks {must!r}")
        if outputs is not None:
            mine = [str(d / o) for o in outputs]
            extra = [
                k for k in after if before.get(k) != after[k] and not any(k == o or k.startswith(o + "/") for o in mine)
            ]
            extra = [k for k in extra if "__pycache__" not in k]
            if extra:
                problems.append(f"wrote {extra[:3]} beside its outputs")
            for o in mine:
                if o.endswith(".json") and o in after and before.get(o) != after[o] and Path(o).is_file():
                    try:
                        json.loads(Path(o).read_text())
                    except ValueError:
                        problems.append(f"{Path(o).name} is not valid JSON")
    cleanup(d, outside)
    return verb, name, "unclean" if problems else "clean", "; ".join(problems)


def cleanup(*dirs: Path) -> None:
    """Remove a case's directories (its FIFOs and links first, never followed)."""
    for d in dirs:
        for p in sorted(d.rglob("*"), reverse=True) if d.exists() else []:
            if p.is_symlink() or stat.S_ISFIFO(os.lstat(p).st_mode):
                p.unlink()
        shutil.rmtree(d, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hostile-"))
    sentinel = base.parent / f"{base.name}-sentinel"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("keep")
    todo = [c for c in cases(base) if args.only in f"{c[0]} {c[1]}"]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda c: run_case(c, base, sentinel), todo))
    counts: dict = {}
    for verb, name, status, why in results:
        counts.setdefault(verb, {"clean": 0, "unclean": 0, "skipped": 0})[status] += 1
        if status != "clean":
            print(f"{status:8s} {verb:8s} {name}: {why}")
    total = {k: sum(c[k] for c in counts.values()) for k in ("clean", "unclean", "skipped")}
    for verb, c in counts.items():
        print(f"{verb:8s} clean {c['clean']:4d}  unclean {c['unclean']:3d}  skipped {c['skipped']:3d}")
    print(
        f"all      clean {total['clean']:4d}  unclean {total['unclean']:3d}  skipped {total['skipped']:3d}"
        f"  ({len(results)} cases)"
    )
    shutil.rmtree(base, ignore_errors=True)
    shutil.rmtree(sentinel, ignore_errors=True)
    return 0 if total["unclean"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
