"""What the `paper` preset costs: FLOPs of every stage (`benchmarks.paper_flops`), seconds on this CPU (calibrated on
the stages of stored `small` and `tiny` runs), and an H100/H200 estimate with its assumptions and what limits it.

`python -m benchmarks.paper_cost [--json OUT] [--compile]` prints the FLOP-to-seconds rates measured per stage
kind, the paper estimate per stage and the memory of its pool. Nothing is timed except with `--compile` (XLA
compile seconds of paper's largest PPO program and pretraining step on this CPU).

The CPU rates come from `MEASURED`: the stage timings of two stored runs on this 2-core CPU while other
jobs ran on it (loaded, so every rate is low and noisy: the same best-of-n scoring ran 189 s and 244 s):
`small` replicate 2 (/tmp/meas/small_r2, study.json "timings"; the bon-* stages, which study.json does not
time, from each run directory's .lock and DONE modification times) and an older `tiny` run
(/tmp/meas/new_tiny: one RL seed, an evaluation every 5 updates). A proxy stage's timing includes the
pretraining of its backbone when that ran inside it; the backbone's own "lm" timing is subtracted.
CPU extrapolation = paper's FLOPs / the rate of the stage's kind. GPU = max(FLOPs / (peak x utilisation),
the floor of its sequential work) + compilation + the best-of-n stages' host work; every assumption is a
named constant below.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from benchmarks.paper_flops import Stage, pool_memory, stages

# H100 SXM / H200: dense TF32 tensor-core peak (JAX computes float32 matmuls in TF32 on these GPUs by
# default); BF16 would double it, but the code runs float32. H200 has the H100's compute, more memory.
GPU_PEAK = 494.7e12
GPU_UTIL = 0.10  # assumed fraction of that peak: every model has d_model <= 384 and 21-token sequences
LAYER_PASS_S = 50e-6  # assumed floor of one layer's forward at tiny batch: ~10 kernels x ~5 us launch
STEP_S = 100e-6  # assumed floor of one optimizer update (fused AdamW) or one host dispatch
# XLA compile seconds per program, measured on this CPU with --compile for paper's largest shapes (the PPO
# grid chunk: 20 points, 4x256 policy against rm-3xl; the rm-3xl backbone's pretraining step; 2026-12-01,
# loaded 2 cores) and assumed for a forward, sampling or scoring program. A GPU compile differs (autotuning).
COMPILE_PPO_S = 22.4
COMPILE_STEP_S = 8.6
COMPILE_FWD_S = 5.0
CALIBRATE_FRAC = 0.1  # a kind's rate pools its stages with at least this fraction of its largest one's FLOPs
COMPILE_S = {"ppo": COMPILE_PPO_S, "step": COMPILE_STEP_S, "fwd": COMPILE_FWD_S}

MEASURED = {
    "small": {
        "preset": "small",
        "overrides": {},
        "seconds": 6012.1,
        "timings": {
            "labels": 9.12, "lm-1x12": 5.92, "lm-1x16": 5.63, "lm-1x32": 6.90, "lm-1x8": 5.70, "lm-2x64": 14.33,
            "lm-4x96": 45.64, "pool": 127.70, "proxy-rm-l": 29.00, "proxy-rm-l-2000": 17.73,
            "proxy-rm-l-6000": 13.67, "proxy-rm-m": 18.87, "proxy-rm-s": 15.83, "proxy-rm-s-2000": 9.83,
            "proxy-rm-s-6000": 11.56, "proxy-rm-xl": 146.28, "proxy-rm-xs": 14.33, "proxy-rm-xs2": 15.84,
            "rl-rm-l": 480.78, "rl-rm-m": 754.48, "rl-rm-s": 835.26, "rl-rm-xl": 503.13, "rl-rm-xs": 484.70,
            "rl-rm-xs2": 425.74,
            # bon-* from run-directory times (.lock created at the start, DONE written at the end)
            "bon-rm-xs": 15, "bon-rm-xs2": 18, "bon-rm-s": 27, "bon-rm-m": 39, "bon-rm-l": 189, "bon-rm-xl": 1271,
            "bon-rm-s-2000": 29, "bon-rm-s-6000": 12, "bon-rm-l-2000": 244, "bon-rm-l-6000": 237,
        },
    },
    "tiny": {
        "preset": "tiny",
        "overrides": {"rl.seeds": (0,), "rl.ppo.eval_every": 5, "rl.ppo.eval_schedule": "every"},
        "seconds": 424.5,
        "timings": {
            "labels": 12.50, "lm-2x64": 18.18, "pool": 26.13, "proxy-rm-l": 34.98, "proxy-rm-m": 16.92,
            "proxy-rm-s": 13.98, "proxy-rm-xs": 13.06, "rl-rm-l": 57.92, "rl-rm-m": 54.97, "rl-rm-s": 55.21,
            "rl-rm-xs": 59.35, "bon-rm-xs": 3, "bon-rm-s": 4, "bon-rm-m": 9, "bon-rm-l": 44,
        },
    },
}  # fmt: skip


def gpu_seconds(st: Stage, util: float = GPU_UTIL) -> tuple[float, float]:
    """(compute-bound seconds at `util` of the peak, the floor of the stage's sequential work)."""
    return st.flops / (GPU_PEAK * util), st.layer_passes * LAYER_PASS_S + st.steps * STEP_S


def measured_config(run: dict):
    """The study config of a MEASURED run: its preset with the overrides (the shapes are what count)."""
    from study.presets import PRESETS

    cfg = PRESETS[run["preset"]]()
    for key, value in run["overrides"].items():
        head, *rest = key.split(".")
        cfg = _replace(cfg, [head, *rest], value)
    return cfg


def _replace(obj, path: list[str], value):
    if len(path) == 1:
        return dataclasses.replace(obj, **{path[0]: value})
    return dataclasses.replace(obj, **{path[0]: _replace(getattr(obj, path[0]), path[1:], value)})


def _seconds(run: dict, st: Stage) -> float | None:
    """The measured seconds of a stage (a proxy's minus its backbone's pretraining when that ran inside it)."""
    tm = run["timings"]
    key = st.name.split(" ")[0]
    if key not in tm:
        return None
    return tm[key] - (tm.get(st.backbone, 0.0) if st.backbone else 0.0)


def rates(run: dict) -> list[dict]:
    """FLOP/s of every timed stage of a MEASURED run: [{stage, kind, flops, seconds, rate}]."""
    out = []
    for st in stages(measured_config(run)):
        sec = _seconds(run, st)
        if sec:
            out.append({"stage": st.name, "kind": st.kind, "flops": st.flops, "seconds": sec, "rate": st.flops / sec})
    return out


def calibration(rows: list[dict]) -> dict:
    """{kind: {rate, stages, flops, seconds}}: each kind's FLOPs over its seconds, pooled over its stages with at
    least CALIBRATE_FRAC of its largest stage's FLOPs (the arithmetic-bound ones, nearest paper's sizes; the
    smallest are overhead-bound: a 1.2k-parameter proxy ran at 1-2 GFLOP/s)."""
    out = {}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        mine = [r for r in rows if r["kind"] == kind]
        top = max(r["flops"] for r in mine)
        used = [r for r in mine if r["flops"] >= CALIBRATE_FRAC * top]
        f, sec = sum(r["flops"] for r in used), sum(r["seconds"] for r in used)
        out[kind] = {"rate": f / sec, "stages": [r["stage"] for r in used], "flops": f, "seconds": sec}
    return out


def host_seconds_per_response(rows: list[dict], cal: dict, cfg) -> float:
    """Host seconds a best-of-n stage spends per pool response besides scoring (the int32 copy, the estimator
    over every prompt and n, the points and per-prompt tables): the median over the measured bon stages of
    (seconds - FLOPs / the scoring rate) / pool responses, at least 0."""
    n_pool = cfg.bon.n_prompts * cfg.bon.pool_size
    rest = sorted(
        max(0.0, r["seconds"] - r["flops"] / cal["scoring"]["rate"]) / n_pool for r in rows if r["kind"] == "scoring"
    )
    return rest[len(rest) // 2] if rest else 0.0


def compile_seconds(cfg) -> dict:
    """XLA compile seconds on this CPU of paper's largest PPO grid program (policy against the largest proxy, the
    whole kl_coef x seed grid) and of the largest backbone's pretraining step (lowered from abstract shapes)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.bench_ppo import zero_gold
    from gold_rm.world import World
    from lm import model as gpt
    from lm.pretrain import lm_loss_terms, make_optimizer
    from proxy_rm.train import ProxyReward
    from rl.ppo import Scorer, init_policies, make_ppo
    from rl.ppo_config import Hyper

    w = World(cfg.world)
    big = max(cfg.ladder.sizes, key=lambda z: z.d_model * z.n_layer)

    def model(a, **kw):
        return gpt.init(gpt.ModelConfig(w.vocab_size, w.seq_len, a.n_layer, a.d_model, a.n_head), 0, **kw)

    pol, rm = model(cfg.policy), model(big, lm_head=False, scalar_head=True)
    members = jax.tree.map(lambda x: x[None], rm[1])
    reward = Scorer(ProxyReward(rm[0], w.prompt_len, "last"), (members, jnp.zeros(1, jnp.float32)))
    gold = Scorer(zero_gold, ())
    grid = [(float(c), int(sd)) for c in cfg.rl.kl_coefs for sd in cfg.rl.seeds]
    ppo = cfg.rl.ppo
    pg, stacked = init_policies(pol[0], pol[1], [sd for _, sd in grid])
    hyper = Hyper(*(jnp.stack([ppo.hyper(k)[i] for k, _ in grid]) for i in range(len(Hyper._fields))))
    fns = make_ppo(pg, pol[0], reward.fn, gold.fn, ppo.static(), w.prompt_len)
    seeds = jnp.array([sd for _, sd in grid], jnp.int32)
    bank = jnp.asarray(w.sample_prompts(np.random.default_rng(0), 256), jnp.int32)
    runner = jax.eval_shape(fns.init_grid, stacked, hyper, seeds)
    t0 = time.time()
    fns.chunk_grid.lower(runner, hyper, pol[1], bank, reward.params, gold.params).compile()
    out = {f"PPO chunk_grid, {len(grid)} points, policy against {big.name}": time.time() - t0}
    bb = model(big)
    opt = make_optimizer(cfg.policy.pretrain)
    tokens = jnp.zeros((cfg.policy.pretrain.batch_size, w.seq_len), jnp.int32)

    def step(params, opt_state):
        grads = jax.grad(lambda q: jnp.sum(lm_loss_terms(bb[0], q, tokens, tokens > 0)[0]))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return jax.tree.map(jnp.add, params, updates), opt_state

    t0 = time.time()
    jax.jit(step).lower(bb[1], jax.eval_shape(opt.init, bb[1])).compile()
    out[f"pretraining step, {big.name} backbone"] = time.time() - t0
    return out


def fmt_s(x: float) -> str:
    return f"{x:.0f} s" if x < 120 else (f"{x / 60:.1f} min" if x < 7200 else f"{x / 3600:.1f} h")


def report(compile_times: dict | None = None) -> dict:
    """Rates measured on the stored runs, the paper estimate per stage, the pool's memory (and compile times)."""
    from study.presets import paper

    measured = {name: rates(run) for name, run in MEASURED.items()}
    cal = calibration(measured["small"])
    cfg = paper()
    host = host_seconds_per_response(measured["small"], cal, measured_config(MEASURED["small"]))
    n_pool = cfg.bon.n_prompts * cfg.bon.pool_size
    rows = []
    for st in stages(cfg):
        comp, lat = gpu_seconds(st)
        rows.append(
            {
                "stage": st.name,
                "kind": st.kind,
                "flops": st.flops,
                "cpu_s": st.flops / cal[st.kind]["rate"],
                "gpu_compute_s": comp,
                "gpu_latency_s": lat,
                "gpu_s": max(comp, lat),
                "compile_s": sum(COMPILE_S[k] for k in st.programs),
                "host_s": host * n_pool if st.name.startswith("bon-") else 0.0,
            }
        )
    return {
        "measured": measured,
        "calibration": cal,
        "paper": rows,
        "memory": pool_memory(cfg),
        "compile": compile_times,
        "assumptions": {
            "gpu_peak_flops": GPU_PEAK,
            "gpu_util": GPU_UTIL,
            "layer_pass_s": LAYER_PASS_S,
            "step_s": STEP_S,
            "compile_ppo_s": COMPILE_PPO_S,
            "compile_step_s": COMPILE_STEP_S,
            "compile_fwd_s": COMPILE_FWD_S,
            "host_s_per_pool_response": host,
        },
    }


def print_report(rep: dict) -> None:
    cal = rep["calibration"]
    print("## FLOP-to-seconds on this CPU (measured stage timings of stored runs, loaded 2 cores)\n")
    print("| run | stage | kind | GFLOP | measured s | GFLOP/s |\n|---|---|---|---|---|---|")
    for run, rows in rep["measured"].items():
        for r in rows:
            mark = " *" if run == "small" and r["stage"] in cal[r["kind"]]["stages"] else ""
            print(
                f"| {run} | {r['stage']}{mark} | {r['kind']} | {r['flops'] / 1e9:.4g} | {r['seconds']:.1f} |"
                f" {r['rate'] / 1e9:.3g} |"
            )
    print("\n\\* calibrates its kind: " + "; ".join(f"{k} {v['rate'] / 1e9:.3g} GFLOP/s" for k, v in cal.items()))
    print("\n## paper: FLOPs per stage, CPU extrapolation, GPU estimate\n")
    print(
        f"GPU = max(FLOPs / ({GPU_PEAK / 1e12:.0f} TFLOP/s TF32 x {GPU_UTIL:g}), floor); floor ="
        f" {LAYER_PASS_S * 1e6:g} us a sequential layer pass + {STEP_S * 1e6:g} us an optimizer step or dispatch;"
        " compile: seconds of the programs each stage is the first to need; host: best-of-n work on the CPU"
        " besides scoring (measured on small, scaled by pool size)\n"
    )
    head = "| stage | kind | TFLOP | CPU (extrapolated) | GPU compute | GPU floor | GPU | compile | host |"
    print(head + "\n|---|---|---|---|---|---|---|---|---|")
    keys = ("flops", "cpu_s", "gpu_compute_s", "gpu_latency_s", "gpu_s", "compile_s", "host_s")
    by_kind: dict = {}
    for r in rep["paper"]:
        kk = by_kind.setdefault(r["kind"], dict.fromkeys(keys, 0.0))
        for k in keys:
            kk[k] += r[k]
        print(_line(r["stage"], r["kind"], r))
    for kind, k in by_kind.items():
        print(_line(f"**all {kind}**", "", k))
    tot = {k: sum(r[k] for r in rep["paper"]) for k in keys}
    print(_line("**total**", "", tot))
    extra = tot["compile_s"] + tot["host_s"]
    for u in (0.05, GPU_UTIL, 0.3):
        g = sum(max(r["flops"] / (GPU_PEAK * u), r["gpu_latency_s"]) for r in rep["paper"])
        print(
            f"\nGPU machine at {u:g} of the TF32 peak: {fmt_s(g)} on the device + compilation {fmt_s(tot['compile_s'])}"
            f" + best-of-n host work {fmt_s(tot['host_s'])} = {fmt_s(g + extra)}"
        )
    print("\n## memory of paper's best-of-n pool\n\n| what | size |\n|---|---|")
    for k, b in rep["memory"].items():
        print(f"| {k} | {b:,.0f} |" if k == "pool responses" else f"| {k} | {b / 1e9:.3g} GB |")
    if rep["compile"]:
        print("\n## compile seconds on this CPU (--compile)\n")
        for k, sec in rep["compile"].items():
            print(f"- {k}: {sec:.1f} s")


def _line(name: str, kind: str, r: dict) -> str:
    return (
        f"| {name} | {kind} | {r['flops'] / 1e12:.3g} | {fmt_s(r['cpu_s'])} | {fmt_s(r['gpu_compute_s'])} |"
        f" {fmt_s(r['gpu_latency_s'])} | {fmt_s(r['gpu_s'])} | {fmt_s(r['compile_s'])} | {fmt_s(r['host_s'])} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT", help="write the tables as JSON to OUT")
    parser.add_argument("--compile", action="store_true", help="time paper's largest compiles on this CPU")
    args = parser.parse_args(argv)
    from study.presets import paper

    rep = report(compile_seconds(paper()) if args.compile else None)
    print_report(rep)
    if args.json:
        from core.store import atomic_write_json

        atomic_write_json(args.json, rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
