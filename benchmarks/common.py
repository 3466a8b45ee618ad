"""Shared pieces of the benchmarks: sizes, timing, rows, synthetic token data, the machine, torch set-up.

Sizes come in three scales: `full` (the numbers in RESULTS.md), `quick` (`--quick`, at most five
minutes) and `tiny` (environment variable OVEROPT_BENCH_TINY=1: every model and batch shrunk so the
whole suite runs in seconds; what the test uses; the numbers mean nothing).

Timing: every measured callable blocks until its result is ready (JAX: `jax.block_until_ready`);
one warm-up call each (compilation, caches) is excluded; then `repeat` timed calls each, ours and the
peer alternating so that both see the same competition for the cores; the medians are reported.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from core.tokens import BOS, EOS, N_SPECIAL, PAD, SEP

TINY_ENV = "OVEROPT_BENCH_TINY"
# PyTorch's OpenMP threads spin-wait by default; on cores shared with other processes that collapses
# (10x slower steps measured here). Sleeping waiters keep the peer fair; must precede `import torch`.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


class Skip(Exception):
    """A benchmark cannot run here (its peer is not installed); the message says why."""


@dataclasses.dataclass(frozen=True)
class Arch:
    """One transformer size: what both sides build (GPT-2 layout, tied LM head)."""

    n_layer: int
    d_model: int
    n_head: int

    def label(self) -> str:
        return f"{self.n_layer}x{self.d_model}h{self.n_head}"


# The tiny world's token layout (gold_rm.world defaults): vocabulary, prompt length P, response length T.
VOCAB, PROMPT_LEN, MAX_NEW = 21, 8, 14
N_CTX = 32  # learned positions; P + T = 22 fit
TINY_POLICY = Arch(2, 64, 4)  # study.presets.tiny() policy
PAPER_POLICY = Arch(4, 256, 8)  # study.presets.paper() policy
LARGEST_SMALL_PROXY = Arch(4, 96, 4)  # rm-xl, the largest proxy of study.presets.small()
MIDDLE_PROXY = Arch(2, 64, 4)  # rm-l of the tiny preset (the reward model PPO optimises against)
SHRUNK = Arch(1, 16, 2)  # every size under OVEROPT_BENCH_TINY=1


def scale(quick: bool) -> str:
    """'tiny' when OVEROPT_BENCH_TINY is set, else 'quick' or 'full'."""
    if os.environ.get(TINY_ENV, "") not in ("", "0"):
        return "tiny"
    return "quick" if quick else "full"


def pick(quick: bool, full, quick_value, tiny_value):
    """The value for the current scale."""
    return {"full": full, "quick": quick_value, "tiny": tiny_value}[scale(quick)]


def cores() -> int:
    """CPU cores this process may use (XLA's CPU thread pool uses them all; torch is told the same)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def median_seconds(*fns: Callable[[], object], repeat: int, warmup: int = 1) -> list[float]:
    """Median wall seconds of each of `fns` over `repeat` calls, after `warmup` untimed calls of each.

    The callables are called in turn (a, b, a, b, ...) so a change in the machine's load hits all of
    them alike. Each must block until its work is done. Returns one median per callable.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, repeat)):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def row(name: str, ours: float, peer: float, unit: str, detail: str = "") -> dict:
    """One result row. Ratio is the speed-up of ours over the peer, higher is better: ours/peer for a
    rate (unit ending in '/s'), peer/ours for a duration (unit 's')."""
    return normalise({"name": name, "ours": float(ours), "peer": float(peer), "unit": unit, "detail": detail})


def normalise(r: dict) -> dict:
    """Recompute `ratio` with the convention of `row` (bench_fit reports ours/peer seconds; flip it)."""
    ours, peer = float(r["ours"]), float(r["peer"])
    ratio = peer / ours if r["unit"] == "s" else ours / peer
    return {**r, "ours": ours, "peer": peer, "ratio": ratio}


def torch_setup():
    """Import torch with as many threads as JAX uses and a fixed seed; raise Skip when it is missing."""
    try:
        import torch
        import transformers
    except ImportError as e:
        raise Skip(f"PyTorch peer not installed ({e.name}); pip install 'overopt[bench]'") from None
    torch.set_num_threads(cores())
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()  # one-time advice about padding, irrelevant here
    return torch


def gpt2_config(arch: Arch, vocab: int = VOCAB, n_ctx: int = N_CTX):
    """The Hugging Face GPT2Config of the same size as our `ModelConfig` (no dropout: ours has none)."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab,
        n_positions=n_ctx,
        n_embd=arch.d_model,
        n_layer=arch.n_layer,
        n_head=arch.n_head,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )


def model_config(arch: Arch, vocab: int = VOCAB, n_ctx: int = N_CTX):
    """Our `ModelConfig` of `arch`."""
    from lm.model import ModelConfig

    return ModelConfig(vocab_size=vocab, n_ctx=n_ctx, n_layer=arch.n_layer, d_model=arch.d_model, n_head=arch.n_head)


def check_same_size(ours_params: int, torch_module) -> None:
    """Both sides must hold the same number of parameters (identical configuration)."""
    theirs = sum(p.numel() for p in torch_module.parameters())
    if theirs != ours_params:
        raise AssertionError(f"configurations differ: ours has {ours_params} parameters, the peer {theirs}")


def prompts(n: int, rng: np.random.Generator, p: int = PROMPT_LEN, vocab: int = VOCAB) -> np.ndarray:
    """Random prompts in the world layout [BOS, symbols..., SEP]: int32[n, p]."""
    out = rng.integers(N_SPECIAL, vocab, size=(n, p), dtype=np.int32)
    out[:, 0], out[:, -1] = BOS, SEP
    return out


def responses(prompt_tokens: np.ndarray, rng: np.random.Generator, t: int = MAX_NEW, vocab: int = VOCAB):
    """prompt ++ a random response of random length ending in EOS (or truncated at t), PAD after.

    Returns (tokens int32[n, p+t], mask bool[n, t]) as core.tokens lays them out.
    """
    n = prompt_tokens.shape[0]
    body = rng.integers(N_SPECIAL, vocab, size=(n, t), dtype=np.int32)
    length = rng.integers(1, t + 1, size=n)  # tokens kept, EOS included unless truncated at t
    pos = np.arange(t)[None, :]
    # A response shorter than t ends in EOS; one of full length is truncated half of the time.
    ends = (length < t) | (rng.random(n) < 0.5)
    eos = (pos == length[:, None] - 1) & ends[:, None]
    body = np.where(eos, EOS, body)
    mask = pos < length[:, None]
    body = np.where(mask, body, PAD).astype(np.int32)
    return np.concatenate([prompt_tokens, body], axis=1), mask


def machine() -> dict:
    """CPU model, cores, OS and library versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": cores(), "os": platform.platform(), "python": platform.python_version()}
    for lib in ("jax", "flax", "optax", "torch", "transformers"):
        try:
            info[lib] = __import__(lib).__version__
        except ImportError:
            info[lib] = None
    import jax

    info["jax_backend"] = jax.default_backend()
    return info


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (other processes competing for the cores)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []
