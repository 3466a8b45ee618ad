"""Benchmark: sampling Hugging Face checkpoints imported with `lm.hf`, tokens per second.

ours: the checkpoint imported by `lm.hf.load` (a GPT-2 and a Llama-family model: RMSNorm, rotary,
SwiGLU, grouped-query attention) and sampled by `lm.sampling.sample` (one jitted program: prefill,
then a `lax.while_loop` decode over a preallocated KV cache).
peer: transformers' own torch model of the same checkpoint directory (`AutoModelForCausalLM.
from_pretrained`), `generate` with `use_cache=True`, `do_sample=True`, top_k=0, top_p=1,
temperature 1.

Identical on both sides: the weights (one `save_pretrained` directory of a random model built from a
config, nothing downloaded), prompts, response length and batch. Neither stops early: the config has
no EOS, so every call decodes all T steps.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import jax
import numpy as np

from benchmarks import common

VOCAB_HF = 512
PROMPT = 16


def cases(quick: bool) -> list[tuple[str, int, int, int, int]]:
    """(family, layers, width, batch, response length) of each row."""
    return common.pick(
        quick,
        full=[("gpt2", 4, 256, 64, 64), ("llama", 4, 256, 64, 64)],
        quick_value=[("gpt2", 4, 256, 16, 32), ("llama", 4, 256, 16, 32)],
        tiny_value=[("gpt2", 1, 16, 2, 4), ("llama", 1, 16, 2, 4)],
    )


def hf_model(family: str, n_layer: int, d: int):
    """A random transformers model of `family` (no EOS: decoding never stops early)."""
    import transformers as T

    ids = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    if family == "gpt2":
        cfg = T.GPT2Config(vocab_size=VOCAB_HF, n_positions=256, n_embd=d, n_layer=n_layer, n_head=4, **ids)
        return T.GPT2LMHeadModel(cfg).eval()
    cfg = T.LlamaConfig(
        vocab_size=VOCAB_HF, hidden_size=d, intermediate_size=8 * d // 3, num_hidden_layers=n_layer,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, **ids,
    )  # fmt: skip
    return T.LlamaForCausalLM(cfg).eval()


def calls(family: str, n_layer: int, d: int, batch: int, t: int):
    """(ours, peer): blocking calls sampling `batch` responses of `t` tokens from one checkpoint."""
    torch = common.torch_setup()
    from transformers import AutoModelForCausalLM

    from lm.hf import load
    from lm.model import param_count
    from lm.sampling import sample

    with tempfile.TemporaryDirectory() as tmp:
        hf_model(family, n_layer, d).save_pretrained(Path(tmp))
        imp = load(tmp)
        peer = AutoModelForCausalLM.from_pretrained(tmp).eval()
    common.check_same_size(param_count(imp.cfg), peer)
    prompts = np.random.default_rng(0).integers(0, VOCAB_HF, (batch, PROMPT))
    p, key = jax.numpy.asarray(prompts), jax.random.key(1)
    ids = torch.as_tensor(prompts, dtype=torch.long)

    def ours():
        return jax.block_until_ready(sample(imp.graphdef, imp.state, p, key, max_new=t))

    def theirs():
        with torch.inference_mode():
            return peer.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, use_cache=True,
                max_new_tokens=t, min_new_tokens=t, top_k=0, top_p=1.0, temperature=1.0, pad_token_id=0,
            )  # fmt: skip

    return ours, theirs


def rows(quick: bool) -> list[dict]:
    """One row per family: tokens per second of ours and of transformers' generate on the same weights."""
    repeat = common.pick(quick, 5, 3, 1)
    out = []
    for family, n_layer, d, batch, t in cases(quick):
        ours_s, peer_s = common.median_seconds(*calls(family, n_layer, d, batch, t), repeat=repeat)
        n = batch * t
        out.append(
            common.row(
                f"hf sampling {family} {n_layer}x{d} B={batch}",
                n / ours_s,
                n / peer_s,
                "tokens/s",
                f"V={VOCAB_HF} P={PROMPT} T={t}; imported by lm.hf; peer: transformers generate on the same "
                "checkpoint (torch, use_cache, do_sample)",
            )
        )
    return out


if __name__ == "__main__":
    import sys

    for r in rows("--quick" in sys.argv):
        print(r)
