"""`overopt study --preset P --out DIR`: check DIR, run the study pipeline, print the summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

from core import safe_read
from core.config import to_dict
from core.errors import UsageError
from core.store import atomic_write_json, run_id
from criteria import check_lines
from scaling.points import is_max_rule
from study.config import replicate_config
from study.pipeline import MARKER, Study
from study.presets import PRESETS, resolve
from study.stages import STORE_VERSION
from study.text_config import TEXT_PRESETS, resolve_text, text_replicate_config


def output_targets(args) -> list:
    """The study directory and its figures (checked by the CLI before it starts: core.outputs.check_targets)."""
    if args.out is None or args.print_config:
        return []
    return [("--out", args.out, "dir"), ("--out", Path(args.out) / "figures", "dir")]


def prepare_out(out: Path, cfg, resume: bool) -> None:
    """Check DIR before anything is written: new, empty, or a study of the same config (a StudyConfig or a
    TextStudyConfig: DIR/study.json holds its id)."""
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise UsageError(f"--out {out} is a symbolic link to nothing ({os.readlink(out)})")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    marker = out / MARKER
    if out.exists() and any(out.iterdir()):
        if not marker.exists():
            raise UsageError(f"--out {out} is a non-empty directory that holds no overopt study; choose another")
        try:
            prev = safe_read.read_json(marker)
        except (OSError, ValueError):  # JSON and UTF-8 decoding errors are ValueErrors
            prev = None
        if not isinstance(prev, dict):
            raise UsageError(f"{marker} is unreadable; choose another --out")
        if prev.get("store", 1) != STORE_VERSION:
            raise UsageError(
                f"--out {out} holds a study of run-store version {prev.get('store', 1)} (this overopt writes version "
                f"{STORE_VERSION}: stage ids changed with the declared stage graph); choose another --out"
            )
        if prev.get("config_id") != run_id(cfg):
            raise UsageError(
                f"--out {out} holds a study with another config (preset {prev.get('preset')!r}); choose another --out"
            )
    elif resume:
        raise UsageError(f"--resume: {out} holds no study to resume")
    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise UsageError(f"--out {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"--out {out} is not writable")


def add_arguments(p) -> None:
    p.add_argument("--preset", default="tiny", help="named frozen config: " + ", ".join([*PRESETS, *TEXT_PRESETS]))
    p.add_argument("--out", type=Path, help="study directory (created; reused if it holds this study); required to run")
    p.add_argument("--resume", action="store_true", help="require DIR to hold this study already and continue it")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set rl.kl_coefs=[0,0.05] (repeatable)",
    )
    p.add_argument(
        "--replicate",
        type=int,
        default=None,
        metavar="K",
        help="replicate index: every seed of the study derived from K (0 = the preset's own seeds)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")


def run(args) -> int:
    overrides = list(args.overrides) + ([f"replicate={args.replicate}"] if args.replicate is not None else [])
    if args.preset in TEXT_PRESETS:  # Hugging Face models in the text world (study/text_study.py)
        return run_text(args, overrides)
    cfg = resolve(args.preset, overrides)
    if args.print_config:
        print(json.dumps(to_dict(replicate_config(cfg)), indent=2))  # the seeds the stages will use
        return 0
    if args.out is None:
        raise UsageError("study: --out DIR is required (only --print-config runs without it)")
    prepare_out(args.out, cfg, args.resume)
    args.out.mkdir(parents=True, exist_ok=True)
    marker = args.out / MARKER
    if not marker.exists():  # claim the directory for this config before any stage writes
        atomic_write_json(
            marker, {"preset": cfg.preset, "config_id": run_id(cfg), "store": STORE_VERSION, "config": to_dict(cfg)}
        )
    study = Study(cfg, args.out, progress=not args.no_progress)
    res = study.run_all()
    print_summary(res)
    return 0


def run_text(args, overrides) -> int:
    """`overopt study --preset text-tiny`: the text study on its stage graph (resumable, replicates)."""
    cfg = resolve_text(args.preset, overrides)
    if args.print_config:
        print(json.dumps(to_dict(text_replicate_config(cfg)), indent=2))  # the seeds the stages will use
        return 0
    if args.out is None:
        raise UsageError("study: --out DIR is required (only --print-config runs without it)")
    prepare_out(args.out, cfg, args.resume)
    from study.stages.text_models import check_refs, check_tokenizers, prompt_texts  # torch, transformers: here only

    check_refs(cfg)  # bad input: one line, nothing written
    prompt_texts(cfg)
    check_tokenizers(cfg)
    from study.text_study import run as run_text_study  # JAX, torch and transformers: this path only

    args.out.mkdir(parents=True, exist_ok=True)
    marker = args.out / MARKER
    if not marker.exists():  # claim the directory for this config before any stage writes
        atomic_write_json(
            marker, {"preset": cfg.preset, "config_id": run_id(cfg), "store": STORE_VERSION, "config": to_dict(cfg)}
        )
    res = run_text_study(cfg, args.out, progress=not args.no_progress)
    print_summary(res)
    cost = res["info"]["gold_cost"]
    print(f"gold {cost['ref']}: {cost['rows']} rows scored in {cost['seconds']:.1f}s, outside the compiled programs")
    return 0


# a fitted peak this many times beyond the largest measured d is printed as "beyond" (the law's
# extrapolation that far says only that the curve has not turned)
PEAK_BEYOND = 10.0


def summary_lines(fits: list[dict], names: dict) -> list[str]:
    """The end-of-study table: one line per fit; data_size and kl_coef columns when they vary."""
    extra = [c for c in ("data_size", "kl_coef") if len({r.get(c) for r in fits if r.get(c) is not None}) > 1]

    def f(x, w=8, p=3):
        return f"{x:>{w}.{p}f}" if isinstance(x, (int, float)) and x is not None else f"{'-':>{w}}"

    def peak(row, key, w, p):
        dp, dm = row.get("d_peak"), row.get("d_max")
        if isinstance(dp, (int, float)) and isinstance(dm, (int, float)) and dp > PEAK_BEYOND * dm:
            return f"{'beyond':>{w}}"
        return f(row.get(key), w, p)

    lines = [
        f"{'method':6} {'rm_name':>10} {'rm_params':>10} "
        + "".join(f"{c:>10} " for c in extra)
        + f"{'alpha':>8} {'beta':>8} {'r2':>6} {'d_peak':>7} {'gold_peak':>9} {'d_max':>6} {'n':>4}"
    ]
    for row in fits:
        cols = "".join(f"{'-' if row.get(c) is None else format(row[c], 'g'):>10} " for c in extra)
        rm = "-" if row.get("rm_params") is None else row["rm_params"]  # none: direct alignment optimizes no proxy
        lines.append(
            f"{row.get('method', ''):6} {names.get(row.get('rm_params'), ''):>10} {rm:>10} "
            f"{cols}{f(row.get('alpha'))} {f(row.get('beta'))} {f(row.get('r2'), 6, 2)} {peak(row, 'd_peak', 7, 2)} "
            f"{peak(row, 'gold_peak', 9, 3)} {f(row.get('d_max'), 6, 2)} {row.get('n_points', ''):>4}"
        )
    return lines


def print_summary(res: dict) -> None:
    names = res["proxies"].drop_duplicates("rm_params").set_index("rm_params")["rm_name"].to_dict()

    fits = res["fits"]["fits"]
    for line in summary_lines([r for r in fits if is_max_rule(r.get("rule"))], names):
        print(line)
    rules = sorted({r["rule"] for r in fits if not is_max_rule(r.get("rule"))})
    if rules:
        print(f"selection rules {', '.join(rules)}: laws against kl_exact in selection.json and the report")
    if res.get("checks"):
        print("Gao et al.'s qualitative results (criteria.json):")
        for line in check_lines(res["checks"]):
            print("  " + line)
    print(f"study written in {res['info']['seconds']:.0f}s")
