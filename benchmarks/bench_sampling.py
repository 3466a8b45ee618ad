"""Benchmark: sampling responses, tokens per second.

ours: `lm.sampling.sample` (one jitted program: prefill, then a `lax.while_loop` decode over a
preallocated KV cache).
peer: Hugging Face transformers `GPT2LMHeadModel.generate` on PyTorch (CPU), `use_cache=True`,
`do_sample=True` (plain multinomial sampling: top_k=0, top_p=1, temperature 1), random weights from a
`GPT2Config` of the same size (no download). Both never sample PAD/BOS/SEP (ours masks them, the peer
gets `suppress_tokens`), both stop at EOS (PAD after it) and once every row has ended.

Identical on both sides: layers, width, heads, vocabulary, positions, prompt length, response length,
batch; the parameter counts are checked equal. Tokens per second = batch * response length / median
seconds (with random weights no batch ends early: every call decodes all T steps on both sides).
"""

from __future__ import annotations

import jax
import numpy as np

from benchmarks import common
from benchmarks.common import MAX_NEW, PAPER_POLICY, PROMPT_LEN, SHRUNK, TINY_POLICY


def cases(quick: bool) -> list[tuple[common.Arch, int, int]]:
    """(size, batch, response length) of each row."""
    return common.pick(
        quick,
        full=[(TINY_POLICY, 64, MAX_NEW), (TINY_POLICY, 1024, MAX_NEW), (PAPER_POLICY, 256, MAX_NEW)],
        quick_value=[(TINY_POLICY, 64, MAX_NEW), (TINY_POLICY, 1024, MAX_NEW), (PAPER_POLICY, 64, MAX_NEW)],
        tiny_value=[(SHRUNK, 4, 4)],
    )


def ours_call(arch: common.Arch, prompts: np.ndarray, t: int):
    """A blocking call of `sample` on these prompts."""
    from lm.model import init, param_count
    from lm.sampling import sample

    cfg = common.model_config(arch)
    graphdef, state = init(cfg, 0)
    assert param_count(cfg) == sum(x.size for x in jax.tree.leaves(state))
    p = jax.numpy.asarray(prompts)
    key = jax.random.key(1)
    return lambda: jax.block_until_ready(sample(graphdef, state, p, key, max_new=t))


def peer_call(arch: common.Arch, prompts: np.ndarray, t: int):
    """A call of `GPT2LMHeadModel.generate` on the same prompts."""
    torch = common.torch_setup()
    from transformers import GPT2LMHeadModel

    from core.tokens import BOS, EOS, PAD, SEP
    from lm.model import param_count

    model = GPT2LMHeadModel(common.gpt2_config(arch)).eval()
    common.check_same_size(param_count(common.model_config(arch)), model)
    ids = torch.as_tensor(prompts, dtype=torch.long)
    attn = torch.ones_like(ids)

    def call():
        with torch.inference_mode():
            return model.generate(
                input_ids=ids,
                attention_mask=attn,
                do_sample=True,
                use_cache=True,
                max_new_tokens=t,
                top_k=0,
                top_p=1.0,
                temperature=1.0,
                suppress_tokens=[PAD, BOS, SEP],
                eos_token_id=EOS,
                pad_token_id=PAD,
            )

    return call


def rows(quick: bool) -> list[dict]:
    """One row per (size, batch): tokens per second, ours and the peer."""
    repeat = common.pick(quick, 7, 3, 1)
    out = []
    for arch, batch, t in cases(quick):
        prompts = common.prompts(batch, np.random.default_rng(0))
        ours, peer = common.median_seconds(ours_call(arch, prompts, t), peer_call(arch, prompts, t), repeat=repeat)
        n = batch * t
        out.append(
            common.row(
                f"sampling {arch.label()} B={batch}",
                n / ours,
                n / peer,
                "tokens/s",
                f"V={common.VOCAB} P={PROMPT_LEN} T={t}; peer: HF GPT2LMHeadModel.generate "
                f"(torch, use_cache, do_sample)",
            )
        )
    return out


if __name__ == "__main__":
    import sys

    for r in rows("--quick" in sys.argv):
        print(r)
