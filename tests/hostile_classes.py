"""Hostile-input cases of the hostile-classes branch (benchmarks/hostile_cases.py there), ported by class into
`tests/hostile_inputs.py` (`register`): one dict each (verb, name, setup, argv, outputs, codes, must).

`setup(d, tpl, outside)` builds the case's directory `d` from the template `tpl` (`template`: a synthetic
study with a finished run, a sweep, a TRL run from tests/fixtures_trl, points, samples, a spec) and may point
links at `outside` (a directory no command may change). Paths in argv are relative to `d` (the command runs
there). Cases that repeat one of hostile_inputs.py's own (same verb, same hostile shape at the same kind of
input) are listed in `DUPLICATES` with the case that covers them, and are not run twice.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

HUGE = 5000
BIG = "9" * HUGE


def cp(*names):
    """A setup step copying template entries into the case directory."""

    def step(d, tpl, outside):
        for n in names:
            if (tpl / n).is_dir():
                shutil.copytree(tpl / n, d / n, symlinks=True)
            else:
                shutil.copy(tpl / n, d / n)

    return step


def shape(rel: str, kind: str, good: str | None = None):
    """A setup step putting a hostile `kind` at `rel` (replacing what is there)."""

    def step(d, tpl, outside):
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif os.path.lexists(p):
            p.unlink()
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "zero":
            p.symlink_to("/dev/zero")
        elif kind == "devnull":
            p.symlink_to(os.devnull)
        elif kind == "dir":
            p.mkdir()
        elif kind == "dangling":
            p.symlink_to(d / "nowhere")
        elif kind == "outside":
            p.symlink_to(outside / "secret.txt")
        elif kind == "huge_int":
            p.write_text(f'{{"runs": [], "points": [], "n": {BIG}}}\n')
        elif kind == "nan":
            p.write_text('{"runs": [], "points": [], "n": NaN}\n')
        elif kind == "garbage":
            p.write_bytes(b"\x00\xff garbage \x89PNG")
        elif kind == "empty":
            p.write_bytes(b"")
        elif kind == "text":
            p.write_text(good or "")

    return step


def both(*steps):
    def step(d, tpl, outside):
        for s in steps:
            s(d, tpl, outside)

    return step


def _run_dir(d: Path, sub: str = "study/runs") -> Path:
    return next(p for p in sorted((d / sub).iterdir()) if p.is_dir() and not p.is_symlink())


def forge(kind: str, sub: str = "study/runs"):
    """A setup step rewriting the manifest of the first run under d/sub."""

    def step(d, tpl, outside):
        run = _run_dir(d, sub)
        info = json.loads((run / "DONE").read_text())
        files = info["manifest"]["files"]
        good = dict(files["points.parquet"])
        if kind == "empty_list":
            files.clear()
        elif kind == "not_object":
            files["points.parquet"] = [1, 2]
        elif kind == "size_string":
            files["points.parquet"] = {**good, "size": "12"}
        elif kind == "size_huge":
            files["points.parquet"] = {**good, "size": 10**30}
        elif kind == "short_hash":
            files["points.parquet"] = {**good, "sha256": "abc"}
        elif kind == "dotdot":
            files["../../../outside/secret.txt"] = good
        elif kind == "absolute":
            files["/etc/hostname"] = good
        elif kind == "manifest_list":
            info["manifest"] = ["points.parquet"]
        elif kind == "files_null":
            info["manifest"]["files"] = None
        elif kind == "unlisted":
            (run / "extra.parquet").write_bytes(b"garbage table")
        elif kind == "symlinked_subdir":
            (run / "sub").symlink_to(outside)
            files["sub/secret.txt"] = good
        (run / "DONE").write_text(json.dumps(info) if kind != "huge_int_size" else "")
        if kind == "huge_int_size":
            text = json.dumps(info).replace(f'"size": {good["size"]}', f'"size": {BIG}')
            (run / "DONE").write_text(text)

    return step


def symlink_run(sub: str = "study/runs"):
    def step(d, tpl, outside):
        src = _run_dir(d, sub)
        shutil.copytree(src, outside / "run-copy")
        (d / sub / "bon-rm-x-000000000000").symlink_to(outside / "run-copy")

    return step


def runs_as(kind: str, sub: str = "study/runs"):
    def step(d, tpl, outside):
        shutil.rmtree(d / sub)
        if kind == "file":
            (d / sub).write_text("not a directory")
        else:
            shape(sub, kind)(d, tpl, outside)

    return step


def write(rel: str, text: str):
    def step(d, tpl, outside):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)

    return step


def big(text: str) -> str:
    """`text` with every "BIG" string replaced by a 5,000-digit integer."""
    return text.replace('"BIG"', BIG)


def log_rows(rows: list[dict], rel: str = "run/log.jsonl"):
    return write(rel, big("".join(json.dumps(r) + "\n" for r in rows)))


def grpo(step: int, kl: float, gold: float) -> dict:
    return {"step": step, "kl": kl, "rewards/gold/mean": gold, "reward": gold, "completions/mean_length": 10.0}


def samples(rows: list[tuple], rel: str = "s.csv", header: str = "prompt,proxy,gold"):
    return write(rel, header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


CASES: list[dict] = []


def case(verb, name, argv, setup, outputs=(), codes=None, scope="harden", must=None):
    CASES.append(dict(verb=verb, name=name, argv=list(argv), setup=setup, outputs=tuple(outputs), codes=codes))
    CASES[-1].update(scope=scope, must=must)


SPECIAL = ("fifo", "zero", "devnull", "dir", "dangling", "outside")
JSONISH = SPECIAL + ("huge_int", "nan", "garbage", "empty")
OUT_SHAPES = ("fifo", "zero", "devnull", "dir", "dangling", "outside")


def _study_cases():
    from study.config import ALLOCATIONS  # the config values that size an allocation, and their limits

    for _, keys, limit in ALLOCATIONS:  # the first key alone past the product's limit
        k = keys.split()[0]
        case("study", f"--set {k}={limit + 1}", ["--print-config", "--set", f"{k}={limit + 1}"], cp(), codes=(2,))
    for name, value in (("pool_size 10**15", 10**15), ("5000-digit int", BIG), ("nan", "nan"), ("-1", -1)):
        case("study", f"bon.pool_size {name}", ["--print-config", "--set", f"bon.pool_size={value}"], cp(), codes=(2,))
    case("study", "rl grid 200x100", ["--print-config", "--set", f"rl.seeds={list(range(100))}", "--set",
         f"rl.kl_coefs={[i / 1000 for i in range(200)]}"], cp(), codes=(2,))  # fmt: skip
    case("study", "print-config tiny", ["--print-config"], cp(), codes=(0,))
    for kind in ("fifo", "zero", "devnull", "outside"):
        case("study", f"--out onto {kind}", ["--out", "o"], shape("o", kind), codes=(2,))
    for kind in ("fifo", "zero", "dir", "huge_int", "nan", "garbage"):
        case("study", f"--resume, study.json {kind}", ["--out", "study", "--resume"],
             both(cp("study"), shape("study/study.json", kind)), codes=(2,))  # fmt: skip
    for kind in ("fifo", "zero", "huge_int"):
        case("study", f"--resume, runs/store.json {kind}", ["--out", "study", "--resume"],
             both(cp("study"), shape("study/runs/store.json", kind)), codes=(2,))  # fmt: skip


def _sweep_cases():
    axes = "\n".join(f'"{k}" = [{", ".join(str(i) for i in range(10))}]' for k in ("a.b", "c.d", "e.f", "g.h", "i.j"))
    huge = f'preset = "tiny"\n[axes]\n{axes}\n"k.l" = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n'
    case("sweep launch", "10^6 points --dry-run", ["sweep", "launch", "big.toml", "--out", "o", "--dry-run"],
         write("big.toml", huge), codes=(2,))  # fmt: skip
    case("sweep launch", "10^6 points", ["sweep", "launch", "big.toml", "--out", "o"], write("big.toml", huge),
         codes=(2,))  # fmt: skip
    zipped = huge + '[[zip]]\n"m.n" = [1, 2]\n"o.p" = [3, 4]\n'
    case("sweep launch", "2x10^6 with a zip", ["sweep", "launch", "z.toml", "--out", "o", "--dry-run"],
         write("z.toml", zipped), codes=(2,))  # fmt: skip
    ex = f'preset = "tiny"\n[axes]\n{axes}\n"k.l" = [1, 2, 3]\n[[exclude]]\nname = "x"\n"a.b" = 0\n'
    case("sweep launch", "300,000 before excludes", ["sweep", "launch", "e.toml", "--out", "o", "--dry-run"],
         write("e.toml", ex), codes=(2,))  # fmt: skip
    ok = 'preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0, 0.1, 0.2, 0.3]\n"bon.seed" = [1, 2, 3, 4, 5]\n'
    case("sweep launch", "20 points --dry-run", ["sweep", "launch", "ok.toml", "--out", "o", "--dry-run"],
         write("ok.toml", ok), codes=(0,))  # fmt: skip
    for kind in JSONISH:
        case("sweep launch", f"spec {kind}", ["sweep", "launch", "s.toml", "--out", "o", "--dry-run"],
             shape("s.toml", kind), codes=(2,))  # fmt: skip
    bad = {
        "5000-digit value": f'preset = "tiny"\n[base]\nbon = {{ pool_size = {BIG} }}\n',
        "pool_size 10**15": 'preset = "tiny"\n[base]\nbon = { pool_size = 1000000000000000 }\n',
        "axis of 10**15": 'preset = "tiny"\n[axes]\n"bon.pool_size" = [16, 1000000000000000]\n',
        "2 MB spec": 'preset = "tiny"\n' + "#" * 2_000_000 + "\n",
    }
    for name, text in bad.items():
        case("sweep launch", name, ["sweep", "launch", "b.toml", "--out", "o", "--dry-run"], write("b.toml", text),
             codes=(2,))  # fmt: skip
    for kind in ("fifo", "zero", "devnull", "outside"):
        case("sweep launch", f"--out onto {kind}", ["sweep", "launch", "spec.toml", "--out", "o"],
             both(cp("spec.toml"), shape("o", kind)), codes=(2,))  # fmt: skip
    status = ["sweep", "status", "sweep"]
    for kind in JSONISH:
        case("sweep status", f"sweep.json {kind}", status, both(cp("sweep"), shape("sweep/sweep.json", kind)),
             codes=(0, 2) if kind == "nan" else (2,))  # fmt: skip
    for marker in ("FAILED", "RUNNING"):
        for kind in ("fifo", "zero", "dir", "huge_int", "nan", "outside"):

            def point(d, tpl, outside, marker=marker, kind=kind):
                cp("sweep")(d, tpl, outside)
                p = sorted(x for x in (d / "sweep" / "points").iterdir() if not (x / "DONE").exists())[0]
                shape(str((p / marker).relative_to(d)), kind)(d, tpl, outside)

            case("sweep status", f"{marker} {kind}", status, point, codes=(0,))
    for kind in ("empty_list", "not_object", "size_huge", "dotdot", "absolute", "manifest_list", "unlisted",
                 "symlinked_subdir", "huge_int_size"):  # fmt: skip
        case("sweep status", f"manifest {kind}", status, both(cp("sweep"), forge(kind, "sweep/runs")), codes=(0,),
             must="damaged")  # fmt: skip
    case("sweep status", "symlinked run dir", status, both(cp("sweep"), symlink_run("sweep/runs")), codes=(0,),
         must="symbolic link")  # fmt: skip
    for kind in ("file", "fifo", "zero"):
        case("sweep status", f"runs as {kind}", status, both(cp("sweep"), runs_as(kind, "sweep/runs")), codes=(0,),
             must="not the directory of runs")  # fmt: skip
    many = {"name": "m", "points": [{"id": f"p{i:06d}", "values": {}} for i in range(100_000)]}
    case("sweep status", "100,000 points", status, both(cp("sweep"), write("sweep/sweep.json", json.dumps(many))),
         codes=(0,))  # fmt: skip
    dotdot = write("sweep/sweep.json", '{"points": [{"id": "../../x", "values": {}}]}')
    case("sweep status", "point id ../../x", status, both(cp("sweep"), dotdot), codes=(2,))


def _verify_cases():
    v = ["verify", "study"]
    for rel in ("study.json", "fits.json", "criteria.json", "points.parquet", "proxies.parquet"):
        for kind in JSONISH:
            nan_ok = kind == "nan" and rel.endswith(".json")
            case("verify", f"{rel} {kind}", v, both(cp("study"), shape(f"study/{rel}", kind)),
                 codes=(0, 1) if nan_ok else (1,))  # fmt: skip

    def in_run(rel, kind):
        def step(d, tpl, outside):
            cp("study")(d, tpl, outside)
            shape(str((_run_dir(d) / rel).relative_to(d)), kind)(d, tpl, outside)

        return step

    for rel in ("DONE", "metrics.jsonl", "points.parquet", "config.json"):
        for kind in JSONISH:
            case(
                "verify",
                f"run {rel} {kind}",
                v,
                in_run(rel, kind),
                codes=(0, 1) if rel == "DONE" and kind == "nan" else (1,),
            )
    for kind in ("empty_list", "not_object", "size_string", "size_huge", "short_hash", "dotdot", "absolute",
                 "manifest_list", "files_null", "unlisted", "symlinked_subdir", "huge_int_size"):  # fmt: skip
        case("verify", f"manifest {kind}", v, both(cp("study"), forge(kind)), codes=(1,))
    case("verify", "symlinked run dir", v, both(cp("study"), symlink_run()), codes=(1,), must="symbolic link")
    for kind in ("file", "fifo", "zero", "dangling"):
        case("verify", f"runs as {kind}", v, both(cp("study"), runs_as(kind)), codes=(1,))

    def zero_rows(d, tpl, outside):
        import pandas as pd

        cp("study")(d, tpl, outside)
        pd.DataFrame({"method": [], "kl": [], "gold": []}).to_parquet(d / "study" / "points.parquet")

    case("verify", "zero-row points.parquet", v, zero_rows, codes=(1,), must="no rows")
    study_runs = {"runs named ../../outside": ["../../outside"], "runs of a huge int": ["BIG"]}
    for name, runs in study_runs.items():
        case("verify", name, v, both(cp("study"), write("study/study.json", big(json.dumps({"runs": runs})))),
             codes=(0, 1))  # fmt: skip
    case("verify", "a sweep", ["verify", "sweep"], cp("sweep"), codes=(0,))
    case("verify", "a clean study", v, cp("study"), codes=(0,))


def _fit_cases():
    for inp in ("c.csv", "study", "grpo_run"):
        extra = ["--kl-per-token", "completions/mean_length"] if inp == "grpo_run" else []
        base = ["fit", inp, "--n-boot", "0", *extra]
        for kind in OUT_SHAPES:
            case("fit", f"{inp} --json onto {kind}", [*base, "--json", "o.json"], both(cp(inp), shape("o.json", kind)),
                 codes=(2,))  # fmt: skip
        case("fit", f"{inp} --json /dev/null", [*base, "--json", "/dev/null"], cp(inp), codes=(2,))
        case("fit", f"{inp} --json fine", [*base, "--json", "o.json"], cp(inp), outputs=["o.json"], codes=(0,))
    case("fit", "--json onto its input", ["fit", "c.csv", "--json", "c.csv"], cp("c.csv"), codes=(2,))
    case("fit", "--json onto its input:bon", ["fit", "c.csv:bon", "--json", "c.csv"], cp("c.csv"), codes=(2,))

    def hard(d, tpl, outside):
        cp("c.csv")(d, tpl, outside)
        os.link(d / "c.csv", d / "o.json")

    case("fit", "--json onto a hard link to its input", ["fit", "c.csv", "--json", "o.json"], hard, codes=(2,))
    case("fit", "--json onto the study's points", ["fit", "study", "--n-boot", "0", "--json", "study/points.parquet"],
         cp("study"), codes=(2,))  # fmt: skip
    case("fit", "--json onto the trainer state", ["fit", "grpo_run/checkpoint-40/trainer_state.json", "--json",
         "grpo_run/checkpoint-40/trainer_state.json"], cp("grpo_run"), codes=(2,))  # fmt: skip
    for kind in SPECIAL:
        case("fit", f"input {kind}", ["fit", "x.csv"], shape("x.csv", kind), codes=(2,))
    for kind in ("fifo", "zero", "dir", "huge_int", "garbage"):
        case("fit", f"study points.parquet {kind}", ["fit", "study", "--n-boot", "0"],
             both(cp("study"), shape("study/points.parquet", kind)), codes=(2,), scope="ingest")  # fmt: skip
    for kind in ("fifo", "zero", "huge_int", "nan", "garbage"):
        case("fit", f"trainer_state.json {kind}", ["fit", "grpo_run/checkpoint-40"],
             both(cp("grpo_run"), shape("grpo_run/checkpoint-40/trainer_state.json", kind)), codes=(2,),
             scope="ingest")  # fmt: skip
    flags = ["--kl-per-token", "completions/mean_length"]
    logs = {
        "5000-digit kl": [grpo(s, 0.1 * s, 0.1) for s in range(1, 8)] + [{**grpo(8, 1, 1), "kl": "BIG"}],
        "duplicated steps": [grpo(s // 2, 0.1 * s, 0.05 * s) for s in range(2, 20)],
        "steps backward (two histories)": [grpo(s, 0.1 * s, 0.05 * s) for s in (*range(1, 10), *range(1, 10))],
        "half entries not objects": [grpo(s, 0.1 * s, 0.05 * s) if s % 2 else [s] for s in range(1, 16)],
        "rloo k1 slightly negative": [grpo(s, 0.1 * s - 0.01, 0.05 * s) for s in range(0, 12)],
        "kl clearly negative": [grpo(s, -0.5 * s, 0.05 * s) for s in range(1, 12)],
        "nan gold": [{**grpo(s, 0.1 * s, 0.05 * s), "rewards/gold/mean": float("nan")} for s in range(1, 9)],
    }
    for name, rows in logs.items():
        case("fit", f"log: {name}", ["fit", "run/log.jsonl", *flags], log_rows(rows), scope="ingest",
             codes=(2,) if "steps" in name or "clearly" in name or "5000" in name else None)  # fmt: skip
    state = {"log_history": [grpo(s, 0.1 * s, 0.05 * s) for s in (*range(1, 9), *range(1, 9))], "global_step": 8}
    case("fit", "trainer_state concatenated histories", ["fit", "run", *flags],
         write("run/trainer_state.json", json.dumps(state)), scope="ingest", codes=(2,))  # fmt: skip
    wandb = "Step,a - train/kl,a - train/kl\n" + "".join(f"{s},{0.1 * s},{0.2 * s}\n" for s in range(1, 9))
    case("fit", "W&B duplicate columns", ["fit", "kl.csv"], write("kl.csv", wandb), scope="ingest", codes=(2,))
    csv_big = "method,kl,gold\n" + "".join(f"bon,{k},{0.1 * k}\n" for k in range(6)) + f"bon,{BIG},1\n"
    case("fit", "csv 5000-digit kl", ["fit", "b.csv"], write("b.csv", csv_big), scope="ingest", codes=(2,))
    jl_big = "".join(json.dumps({"method": "bon", "kl": k, "gold": 0.1 * k}) + "\n" for k in range(6))
    case("fit", "jsonl 5000-digit gold", ["fit", "b.jsonl"], write("b.jsonl", jl_big + f'{{"method": "bon", '
         f'"kl": 7, "gold": {BIG}}}\n'), scope="ingest", codes=(2,))  # fmt: skip

    def truncated(d, tpl, outside):
        cp("grpo_run")(d, tpl, outside)
        ev = next((d / "grpo_run" / "runs").rglob("events.out.tfevents*"))
        ev.write_bytes(ev.read_bytes()[: ev.stat().st_size * 2 // 3])

    case("fit", "truncated event file", ["fit", "grpo_run/runs", *flags], truncated, scope="ingest", must="trunc")
    case("fit", "--verdict onto a FIFO", ["fit", "study", "--verdict", "v.json"], both(cp("study"),
         shape("v.json", "fifo")), codes=(2,))  # fmt: skip


def _bon_cases():
    rows = [(f"q{p}", (j * 7 + p) % 5 / 2, (j * 3 + p) % 4 / 3) for p in range(4) for j in range(8)]
    for kind in OUT_SHAPES:
        case("bon", f"--json onto {kind}", ["bon", "samples.csv", "--json", "o.json"],
             both(cp("samples.csv"), shape("o.json", kind)), codes=(2,))  # fmt: skip
    case("bon", "--json onto its input", ["bon", "samples.csv", "--json", "samples.csv"], cp("samples.csv"), codes=(2,))
    case("bon", "--json /dev/null", ["bon", "samples.csv", "--json", "/dev/null"], cp("samples.csv"), codes=(2,))
    case("bon", "--json fine", ["bon", "samples.csv", "--n-boot", "5", "--json", "o.json"], cp("samples.csv"),
         outputs=["o.json"], codes=(0,))  # fmt: skip
    for kind in SPECIAL:
        case("bon", f"samples {kind}", ["bon", "x.csv"], shape("x.csv", kind), codes=(2,))
    odd = {
        "5000-digit proxy": rows[:-1] + [("q3", BIG, 0.5)],
        "empty completions": [(p, x, g) + ("",) for p, x, g in rows],
        "NA text responses": [(p, x, g) + ("NA" if i % 2 else "None",) for i, (p, x, g) in enumerate(rows)],
        "0/1 gold": [(p, x, int(g > 0.4)) for p, x, g in rows],
        "all-tied proxy": [(p, 1.0, g) for p, x, g in rows],
        "prompt 1 and '1'": [("1" if i < 16 else '"1"', x, g) for i, (p, x, g) in enumerate(rows)],
    }
    for name, rs in odd.items():
        header = "prompt,proxy,gold,response" if len(rs[0]) == 4 else "prompt,proxy,gold"
        case("bon", name, ["bon", "s.csv", "--n-boot", "5"], samples(rs, header=header), scope="ingest",
             codes=(2,) if "5000" in name else (0,))  # fmt: skip
    listed = "".join(json.dumps({"prompt": [1, 2, p] + list(range(300)), "proxy": x, "gold": g}) + "\n"
                     for p, x, g in [(i // 8, r[1], r[2]) for i, r in enumerate(rows)])  # fmt: skip
    case("bon", "list-valued prompts", ["bon", "s.jsonl", "--n-boot", "5"], write("s.jsonl", listed),
         scope="ingest", codes=(0,), must="4 prompts")  # fmt: skip

    def million(d, tpl, outside):
        import numpy as np

        rng = np.random.default_rng(0)
        x, g = rng.normal(size=1_000_000), rng.normal(size=1_000_000)
        with open(d / "m.csv", "w") as f:
            f.write("prompt,proxy,gold\n")
            f.writelines(f"q,{a:.4f},{b:.4f}\n" for a, b in zip(x, g))

    case("bon", "10^6 responses for one prompt", ["bon", "m.csv", "--n-boot", "5"], million, scope="ingest",
         codes=(0,))  # fmt: skip


def _property_cases():
    """Shapes tests/test_hostile_shapes.py generated and found wrong (issue 33), one case each."""
    jsonl_prompts = [1, "1", True, [[]], [{}], {"a": 1}, [["a", 1]], "007", "7"]
    text = "".join(json.dumps({"prompt": p, "proxy": (j * 7 + i) % 5 / 2, "gold": (j * 3 + i) % 4 / 3}) + "\n"
                   for i, p in enumerate(jsonl_prompts) for j in range(4))  # fmt: skip
    # each prompt its own pool of 4: two merged would be a pool of 8, refused as unequal (exit 2)
    case("bon", "JSON lines prompts that print or compare alike", ["bon", "s.jsonl", "--n-boot", "5"],
         write("s.jsonl", text), scope="ingest", codes=(0,))  # fmt: skip
    csv_prompts = ["01", "1", "1.0", "+1", "007", "7"]
    case("bon", "CSV prompts 01, 1, 1.0, +1", ["bon", "s.csv", "--n-boot", "5"],
         samples([(p, (j * 7 + i) % 5 / 2, (j * 3 + i) % 4 / 3) for i, p in enumerate(csv_prompts) for j in range(4)]),
         scope="ingest", codes=(0,))  # fmt: skip

    def linked(name):
        def step(d, tpl, outside):
            cp(name)(d, tpl, outside)
            (d / f"link-{name}").symlink_to(d / name)

        return step

    case("bon", "samples given twice through a link", ["bon", "samples.csv", "link-samples.csv"],
         linked("samples.csv"), scope="ingest", codes=(2,), must="given twice")  # fmt: skip
    case("fit", "an input given twice through a link", ["fit", "c.csv", "link-c.csv"], linked("c.csv"),
         scope="ingest", codes=(2,), must="given twice")  # fmt: skip
    per_token = ["--kl-per-token", "completions/mean_length", "--n-boot", "0"]
    case("fit", "a run and its checkpoint", ["fit", "grpo_run", "grpo_run/checkpoint-40", *per_token], cp("grpo_run"),
         scope="ingest", codes=(2,), must="read twice")  # fmt: skip

    def two_dirs(d, tpl, outside):
        for parent in ("a", "b"):
            (d / parent).mkdir()
            shutil.copytree(tpl / "grpo_run", d / parent / "grpo_run")

    case("fit", "two runs sharing a directory name", ["fit", "a/grpo_run", "b/grpo_run", *per_token], two_dirs,
         scope="ingest", codes=(0,), must="run=b/grpo_run")  # fmt: skip


def _figures_cases():
    base = ["figures", "study", "--only", "predicted_peaks", "--no-report", "--out", "figs"]
    case("figures", "one figure", base, cp("study"), outputs=["figs"], codes=(0,))
    for rel in ("points.parquet", "fits.json", "study.json", "proxies.parquet"):
        for kind in ("fifo", "zero", "dir", "huge_int", "garbage"):
            case("figures", f"{rel} {kind}", base, both(cp("study"), shape(f"study/{rel}", kind)), codes=(2,),
                 scope="harden" if rel != "points.parquet" else "ingest")  # fmt: skip
    for kind in ("fifo", "zero", "devnull", "outside"):
        case("figures", f"--out onto {kind}", base, both(cp("study"), shape("figs", kind)), codes=(2,))

    def figure_link(d, tpl, outside):
        cp("study")(d, tpl, outside)
        (d / "figs").mkdir()
        (d / "figs" / "predicted_peaks.png").symlink_to(outside / "secret.txt")

    case("figures", "a figure file linked outside", base, figure_link, codes=(2,))
    case("figures", "trainer run", ["figures", "grpo_run", "--out", "figs"], cp("grpo_run"), outputs=["figs"],
         scope="ingest")  # fmt: skip


def build_cases() -> list[dict]:
    CASES.clear()
    for group in (_study_cases, _sweep_cases, _verify_cases, _fit_cases, _bon_cases, _figures_cases, _property_cases):
        group()
    for c in CASES:  # the study verb's argv lacks its name (the cases share it)
        if c["verb"] == "study":
            c["argv"] = ["study", *c["argv"]]
    return CASES


# (verb, name) of the cases hostile_inputs.py already runs (its name for the same hostile shape in brackets)
DUPLICATES = {
    ("study", "bon.pool_size pool_size 10**15"): "set 'bon.pool_size=1000000000000000'",
    ("study", "bon.pool_size 5000-digit int"): "set 'bon.pool_size=999...'",
    ("study", "bon.pool_size nan"): "set 'bon.pool_size=nan'",
    ("study", "bon.pool_size -1"): "set 'bon.pool_size=-5'",
    ("study", "print-config tiny"): "preset tiny",
    ("study", "--out onto fifo"): "--out onto fifo (ported)",
    ("study", "--out onto zero"): "--out onto zero (ported)",
    ("study", "--out onto outside"): "--out onto outside (ported)",
    ("study", "--resume, study.json zero"): "resume study.json -> /dev/zero",
    ("study", "--resume, study.json huge_int"): "resume study.json huge int",
    ("study", "--resume, study.json garbage"): "resume study.json garbage",
    ("sweep launch", "10^6 points --dry-run"): "spec 1e6 points",
    ("sweep launch", "20 points --dry-run"): "spec ok small",
    ("sweep launch", "spec fifo"): "spec is a fifo",
    ("sweep launch", "spec zero"): "spec -> /dev/zero",
    ("sweep launch", "spec garbage"): "spec non-utf8",
    ("sweep launch", "spec huge_int"): "spec not toml (JSON text)",
    ("sweep launch", "spec nan"): "spec not toml (JSON text)",
    ("sweep launch", "pool_size 10**15"): "spec pool 1e15",
    ("sweep status", "sweep.json fifo"): "status fifo",
    ("sweep status", "sweep.json zero"): "status /dev/zero",
    ("sweep status", "sweep.json huge_int"): "status huge int",
    ("sweep status", "sweep.json garbage"): "status garbage",
    ("sweep status", "FAILED fifo"): "status FAILED fifo",
    ("sweep status", "RUNNING fifo"): "status RUNNING fifo",
    ("sweep status", "symlinked run dir"): "status symlinked run dir",
    ("sweep status", "point id ../../x"): "status id traversal",
    ("verify", "study.json fifo"): "store study.json fifo",
    ("verify", "study.json zero"): "store study.json -> /dev/zero",
    ("verify", "fits.json huge_int"): "store fits.json huge int",
    ("verify", "fits.json dangling"): "store fits.json dangling",
    ("verify", "fits.json outside"): "store fits.json outside",
    ("verify", "run DONE fifo"): "store DONE fifo",
    ("verify", "run DONE zero"): "store DONE -> /dev/zero",
    ("verify", "run DONE huge_int"): "store huge int",
    ("verify", "run DONE dangling"): "store DONE dangling",
    ("verify", "manifest empty_list"): "store forged empty",
    ("verify", "manifest not_object"): "store malformed entry",
    ("verify", "manifest dotdot"): "store outside",
    ("verify", "manifest manifest_list"): "store manifest not dict",
    ("verify", "manifest unlisted"): "store extra file",
    ("verify", "symlinked run dir"): "store symlinked run",
    ("verify", "runs as file"): "store runs as file",
    ("verify", "zero-row points.parquet"): "store zero-row points",
    ("verify", "a clean study"): "store none",
    ("fit", "c.csv --json onto fifo"): "fit --json onto fifo",
    ("fit", "c.csv --json onto dir"): "fit --json onto dir",
    ("fit", "c.csv --json onto dangling"): "fit --json onto dangling",
    ("fit", "--json onto its input"): "fit --json onto input",
    ("fit", "--json onto the study's points"): "--json onto the study's points.parquet",
    ("fit", "input fifo"): "p.csv fifo",
    ("fit", "input zero"): "p.csv /dev/zero",
    ("fit", "trainer_state.json fifo"): "trainer_state fifo",
    ("fit", "trainer_state.json zero"): "trainer_state -> /dev/zero",
    ("fit", "trainer_state.json huge_int"): "trainer_state huge int",
    ("fit", "log: duplicated steps"): "trainer log steps repeated",
    ("fit", "log: steps backward (two histories)"): "trainer log steps backwards",
    ("fit", "log: rloo k1 slightly negative"): "trainer log kl slightly negative",
    ("fit", "log: kl clearly negative"): "trainer log kl clearly negative",
    ("fit", "trainer_state concatenated histories"): "trainer log steps backwards",
    ("fit", "W&B duplicate columns"): "wandb duplicate columns",
    ("fit", "csv 5000-digit kl"): "csv huge int",
    ("bon", "--json onto fifo"): "bon --json onto fifo",
    ("bon", "--json onto dir"): "bon --json onto dir",
    ("bon", "--json onto dangling"): "bon --json onto dangling",
    ("bon", "--json onto its input"): "bon --json onto input",
    ("bon", "--json fine"): "csv good",
    ("bon", "5000-digit proxy"): "csv huge int gold",
    ("bon", "empty completions"): "csv empty completions",
    ("bon", "NA text responses"): "csv NA text",
    ("bon", "0/1 gold"): "csv 0/1 gold",
    ("bon", "all-tied proxy"): "csv all tied proxy",
    ("bon", "prompt 1 and '1'"): "csv numeric prompts 1 and '1'",
    ("figures", "points.parquet fifo"): "points.parquet fifo",
    ("figures", "points.parquet zero"): "points.parquet zero",
    ("figures", "fits.json fifo"): "fits.json fifo",
    ("figures", "fits.json zero"): "fits.json zero",
    ("figures", "study.json fifo"): "study.json fifo",
    ("figures", "study.json zero"): "study.json zero",
    ("figures", "--out onto fifo"): "--out onto fifo",
    ("figures", "--out onto zero"): "--out onto zero",
    ("figures", "--out onto outside"): "--out onto outside",
}


def template(base: Path) -> Path:
    """The inputs every case copies from (benchmarks/hostile.py's on the hostile-classes branch): a synthetic
    study with one finished run, a sweep (a finished point, a failed one, a finished run), a TRL run, a
    trainer log, a points table, samples, a sweep spec."""
    import pandas as pd  # here: the case list is built without pandas (hostile_inputs imports this module)
    from demo_data import write_demo  # here: tests/ is on sys.path only once the harness runs

    from core.store import Run  # here: the repository root is on sys.path only once the harness runs

    fix = Path(__file__).resolve().parent / "fixtures_trl"
    t = base / "template"
    write_demo(t / "study")
    run = Run.open(t / "study" / "runs", {"stage": "bon"}, prefix="bon-rm-s")
    run.write_points(pd.DataFrame({"method": ["bon"] * 4, "kl": [0.0, 0.5, 1.0, 1.5], "gold": [0, 0.2, 0.3, 0.25]}))
    run.log({"step": 1, "gold": 0.1})
    run.mark_done({"seconds": 0})
    info = json.loads((t / "study" / "study.json").read_text()) if (t / "study" / "study.json").exists() else {}
    (t / "study" / "study.json").write_text(json.dumps({**info, "store": 2, "runs": [run.id]}))
    sw = t / "sweep"
    point = Run.open(sw / "points", {"preset": "tiny", "x": 1})
    (point.path / "out").mkdir()
    point.mark_done({"seconds": 0})
    failed = Run.open(sw / "points", {"preset": "tiny", "x": 2})
    (failed.path / "FAILED").write_text(json.dumps({"error": "boom"}))
    srun = Run.open(sw / "runs", {"stage": "rl"}, prefix="rl-rm-s")
    srun.write_points(pd.DataFrame({"method": ["rl"] * 3, "kl": [0.0, 1.0, 2.0], "gold": [0, 0.3, 0.2]}))
    srun.mark_done({"seconds": 0})
    pts = [{"id": point.id, "values": {"x": 1}}, {"id": failed.id, "values": {"x": 2}}]
    (sw / "sweep.json").write_text(json.dumps({"name": "s", "preset": "tiny", "points": pts}))
    shutil.copytree(fix / "grpo_run", t / "grpo_run")
    shutil.copy(fix / "grpo_log_history.jsonl", t / "log.jsonl")
    rows = "".join(f"bon,{k / 2},{0.5 * k - 0.05 * k * k}\n" for k in range(12))
    (t / "c.csv").write_text("method,kl,gold\n" + rows)
    rows = "".join(f"q{p},{(j * 7 + p) % 5 / 2},{(j * 3 + p) % 4 / 3}\n" for p in range(4) for j in range(8))
    (t / "samples.csv").write_text("prompt,proxy,gold\n" + rows)
    (t / "spec.toml").write_text('preset = "tiny"\n[axes]\n"labels.flip_frac" = [0.0, 0.1]\n')
    return t


def outside_of(d: Path) -> Path:
    """The directory a case's links may point into and no command may change (made by the harness)."""
    return d.parent / f"{d.name}-outside"


def register(add, base: Path) -> tuple[int, int]:
    """Add every ported case that is not a duplicate to hostile_inputs' list (`add(verb, name, setup, codes,
    must=, outputs=)`, setup(d) -> argv); the template is built once, by the first case set up.
    Returns (ported, skipped as duplicates)."""
    import threading  # here: only the harness' setups run in threads

    lock, built = threading.Lock(), []

    def tpl() -> Path:
        with lock:
            if not built:
                built.append(template(base))
            return built[0]

    ported = dups = 0
    for c in build_cases():
        if (c["verb"], c["name"]) in DUPLICATES:
            dups += 1
            continue
        verb = c["verb"].split()[0]  # "sweep launch" / "sweep status" -> the harness' verb "sweep"
        name = f"{c['verb'].split()[-1]} {c['name']}" if verb == "sweep" else c["name"]

        def setup(d, c=c):
            c["setup"](d, tpl(), outside_of(d))
            return list(c["argv"])

        add(verb, f"[classes] {name}", setup, c["codes"], must=c["must"], outputs=c["outputs"])
        ported += 1
    return ported, dups
