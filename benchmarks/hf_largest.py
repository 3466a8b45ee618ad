"""`python -m benchmarks.hf_largest [SIZE ...] [--dtype float32|bfloat16]`: the largest Llama-family model
this machine samples, measured: one child process per size builds a random Llama-style model (the
`ModelConfig` that `lm.hf.load` builds for a Llama checkpoint: RMSNorm, rotary, SwiGLU, GQA, untied
head, vocabulary 32000), samples BATCH responses of T tokens after P-token prompts with the KV-cache
sampler, and reports its parameters, peak resident memory (ru_maxrss) and responses per second
(warm: the second call). A size that fails (out of memory) is reported as such. Not run by the tests.

The weights are initialised in JAX directly rather than read from a saved checkpoint (the import
itself is tested for parity in tests/test_hf.py); reading a checkpoint adds its memory-mapped file.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

# name (parameters at vocabulary 32000) -> (layers, width, heads, kv heads, MLP width): SmolLM / Llama-3.2-like
SIZES = {
    "125M": (12, 768, 12, 4, 2048),
    "350M": (24, 1024, 16, 4, 2816),
    "850M": (16, 2048, 32, 8, 5632),
    "1.5B": (24, 2048, 32, 8, 8192),
    "3B": (28, 3072, 24, 8, 8192),
}
VOCAB, BATCH, PROMPT, T = 32000, 8, 32, 32


def child(size: str, dtype: str) -> dict:
    import jax
    import jax.numpy as jnp

    from lm.model import ModelConfig, init, param_count
    from lm.sampling import sample

    n_layer, d, h, kv, f = SIZES[size]
    cfg = ModelConfig(
        vocab_size=VOCAB, n_ctx=4096, n_layer=n_layer, d_model=d, n_head=h, tie_embeddings=False,
        norm="rmsnorm", norm_eps=1e-6, positions="rotary", mlp="gated", activation="silu", d_ff=f,
        n_kv_head=kv, qkv_bias=False, proj_bias=False, mlp_bias=False, pad_id=0, eos_id=-1, forbidden=(),
    )  # fmt: skip
    graphdef, state = init(cfg, 0)
    if dtype == "bfloat16":
        state = jax.tree.map(lambda x: x.astype(jnp.bfloat16), state)
    prompts = jax.random.randint(jax.random.key(1), (BATCH, PROMPT), 0, VOCAB)
    times = []
    for i in range(2):
        t0 = time.perf_counter()
        jax.block_until_ready(sample(graphdef, state, prompts, jax.random.key(i), max_new=T))
        times.append(time.perf_counter() - t0)
    return {
        "size": size,
        "dtype": dtype,
        "params": param_count(cfg),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "first_call_s": times[0],
        "responses_per_s": BATCH / times[1],
        "tokens_per_s": BATCH * T / times[1],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hf_largest", description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", default=list(SIZES), help=f"of {', '.join(SIZES)}")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.sizes[0], args.dtype)))
        return 0
    for size in args.sizes:
        cmd = [sys.executable, "-m", "benchmarks.hf_largest", size, "--dtype", args.dtype, "--child"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode:
            print(json.dumps({"size": size, "dtype": args.dtype, "failed": run.returncode}), flush=True)
            continue
        print(run.stdout.strip().splitlines()[-1], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
