"""`overopt sweep launch SPEC.toml --out DIR` and `overopt sweep status DIR`."""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import UsageError
from core.integrity import check_tree, symlinked_run_dirs
from sweeps.spec import expand, load_spec


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    la = sub.add_parser(
        "launch",
        help="run every point of a spec that is not DONE, then aggregate",
        description="Run every point of SPEC that is not DONE under DIR, then write DIR/points.parquet,"
        " fits.json, figures and report. Exit 0: all done; 1: some failed; 2: bad input.",
    )
    la.add_argument("spec", type=Path, metavar="SPEC.toml", help="sweep spec (see sweeps/specs/)")
    la.add_argument("--out", required=True, type=Path, help="sweep directory (created; reused to resume)")
    la.add_argument(
        "--executor",
        choices=("local", "debug", "slurm"),
        default="local",
        help="local: worker subprocesses on this machine (default); debug: in this process; "
        "slurm: a submitit job array",
    )
    la.add_argument(
        "--max-parallel",
        type=int,
        default=None,
        metavar="K",
        help="jobs at once (local default: half the cores; slurm: the array parallelism)",
    )
    la.add_argument(
        "--devices-per-point",
        type=int,
        default=None,
        metavar="N",
        help="local executor on a GPU machine: one worker per N GPUs (each sees only its own, no"
        " preallocation; default 1); on a CPU-only machine only 1 is accepted",
    )
    la.add_argument(
        "--jax-cache",
        type=Path,
        default=None,
        metavar="PATH",
        help="persistent JAX compilation cache shared by the jobs (default DIR/.jax_cache)",
    )
    la.add_argument("--no-figures", action="store_true", help="aggregate points and fits but draw no figures")
    la.add_argument("--dry-run", action="store_true", help="print the expanded points and exit")
    s = la.add_argument_group("slurm")
    s.add_argument("--slurm-partition", default=None, metavar="P", help="partition of the array tasks")
    s.add_argument("--timeout-min", type=int, default=240, metavar="M", help="time limit of each task (minutes)")
    s.add_argument("--gpus-per-job", type=int, default=1, metavar="G", help="GPUs of each task (of each node)")
    s.add_argument(
        "--nodes-per-job",
        type=int,
        default=1,
        metavar="N",
        help="nodes of each point: one task a node, every task computing, one mesh over all their GPUs",
    )
    s.add_argument("--cpus-per-task", type=int, default=8, metavar="C", help="CPUs of each task")
    s.add_argument("--mem-gb", type=int, default=None, metavar="M", help="memory of each task (GB)")
    s.add_argument(
        "--max-requeue",
        type=int,
        default=3,
        metavar="R",
        help="requeues after a timeout (preempted tasks always requeue)",
    )
    s.add_argument("--wait", action="store_true", help="wait for the array, then aggregate")
    st = sub.add_parser(
        "status",
        help="done / running / failed / pending per point",
        description="Print the state of every point of the sweep in DIR (failures with their last error line).",
    )
    st.add_argument("dir", type=Path, metavar="DIR", help="sweep directory")


def output_targets(args) -> list:
    """The sweep directory and its figures (checked by the CLI before it starts: core.outputs.check_targets)."""
    if args.action != "launch":
        return []
    return [("--out", args.out, "dir"), ("--out", Path(args.out) / "figures", "dir")]


def run(args) -> int:
    from sweeps import launch as L  # the verb's own work: `overopt --help` registers verbs without importing them

    if args.action == "status":
        print(L.format_status(args.dir))
        for line in damage_lines(args.dir):
            print(line)
        return 0
    if args.dry_run:
        points = expand(load_spec(args.spec))
        for p in points:
            print(p.id, " ".join(f"{k}={L.show_value(v)}" for k, v in p.values.items()) or "(base)")
        print(f"{len(points)} points")
        return 0
    for flag in ("timeout_min", "gpus_per_job", "nodes_per_job", "cpus_per_task", "mem_gb", "max_requeue"):
        v = getattr(args, flag)
        if v is not None and v < (0 if flag in ("gpus_per_job", "max_requeue") else 1):
            raise UsageError(f"--{flag.replace('_', '-')} must be positive, got {v}")
    slurm = L.SlurmOptions(
        partition=args.slurm_partition,
        timeout_min=args.timeout_min,
        gpus_per_job=args.gpus_per_job,
        nodes_per_job=args.nodes_per_job,
        cpus_per_task=args.cpus_per_task,
        mem_gb=args.mem_gb,
        max_parallel=args.max_parallel,
        max_requeue=args.max_requeue,
        wait=args.wait,
    )
    return L.launch(
        args.spec,
        args.out,
        executor=args.executor,
        max_parallel=args.max_parallel,
        slurm=slurm,
        jax_cache=args.jax_cache,
        figures=not args.no_figures,
        devices_per_point=args.devices_per_point,
    )


def damage_lines(out: Path) -> list[str]:
    """Lines for the damaged files of finished runs under DIR/runs (core.integrity.check_tree; read-only),
    and a count of the finished runs that predate manifests (unverified)."""
    problems = check_tree(Path(out) / "runs")
    damaged = [p for p in problems if p.get("status", "damaged") == "damaged"]
    unverified = {p["run"] for p in problems if p.get("status") == "unverified"}
    lines = []
    for sub in ("runs", "points"):  # the run stores themselves, and links in them (never followed, never silent)
        root = Path(out) / sub
        if os.path.lexists(root) and not root.is_dir():  # a file, a FIFO, a link to nothing
            what = "a symbolic link to nothing" if not root.exists() else "not a directory"
            lines.append(f"{sub}: {what}, not the directory of runs (`overopt verify {out}`)")
            continue
        for d in symlinked_run_dirs(root):
            lines.append(f"{sub}/{d.name}: a symbolic link, not a run: not read (`overopt verify {out}`)")
    if damaged:
        lines.append(
            f"{len(damaged)} damaged file(s) in finished runs (a relaunch recomputes them; `overopt verify {out}`):"
        )
        lines += [f"  {p['run']}/{p['file']}: {p['problem']}" for p in damaged]
    if unverified:
        lines.append(f"{len(unverified)} finished run(s) predate integrity manifests (unverified)")
    return lines
