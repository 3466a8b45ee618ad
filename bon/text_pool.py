"""A best-of-n pool in the text world: a Hugging Face policy samples N responses for every prompt once, with
the JAX KV-cache sampler (left-padded prompts, the tokenizer's EOS and PAD); every proxy and the gold score
the decoded text (`lm.hf.text_rm`); the result is a samples table that `ingest.bon_samples` turns into
best-of-n points, one curve a proxy.

Samples table (one row a response and proxy): `prompt` (the prompt's index in the file), `prompt_text`,
`response` (the response's token ids, space-separated: its identity, so that equal responses merge in the
KL estimate), `response_text` (decoded, EOS and special tokens dropped), `n_tokens`, `ref_logprob` (the
response's log-probability under the policy, summed from the sampler's), `proxy` (this row's proxy's
score), `proxy_ref`, `rm_params` (the proxy's parameters: the curve), `gold`.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import pandas as pd

from core.errors import UsageError
from gold_rm.text_world import TextWorld
from lm.arch import param_count
from lm.hf.convert import load
from lm.hf.tokenizer import with_token_ids
from lm.sampling import sample_many

DEFAULT_MAX_NEW = 64  # responses' default length, cut to what every model's context leaves


@dataclasses.dataclass
class TextPool:
    """N responses per prompt of a text world: tokens int32[M*N, P+T], mask bool[M*N, T], ref_logprob
    float[M*N] (summed over each response), rows prompt-major (row i*N + j: prompt i's j-th response)."""

    world: TextWorld
    tokens: np.ndarray
    mask: np.ndarray
    ref_logprob: np.ndarray
    n: int
    seconds: float
    policy_params: int

    @property
    def prompt_index(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.world.texts)), self.n)

    def texts(self) -> list[str]:
        """prompt ++ response text of each row: what every reward model scores."""
        return self.world.sequence_texts(self.tokens, self.mask)


def default_max_new(n_ctx: int, prompt_len: int, max_new: int | None) -> int:
    """The responses' length: `max_new` if given (it must fit n_ctx after the prompts), else DEFAULT_MAX_NEW cut to
    the room n_ctx leaves (n_ctx: the smallest context of the policy and every reward model)."""
    room = n_ctx - prompt_len
    if max_new is None:
        if room < 1:
            raise UsageError(f"prompts of {prompt_len} tokens leave no room for a response in a context of {n_ctx}")
        return min(DEFAULT_MAX_NEW, room)
    if max_new > room:
        raise UsageError(
            f"--max-new-tokens {max_new}: prompts of {prompt_len} tokens leave {max(room, 0)} in the smallest"
            f" context ({n_ctx} tokens)"
        )
    return max_new


def sample_pool(
    policy_dir,
    texts,
    *,
    n: int,
    max_new: int | None,
    n_ctx: int | None = None,
    seed: int = 0,
    temperature: float = 1.0,
    batch_size: int = 256,
    compute_dtype: str = "float32",
) -> TextPool:
    """Sample `n` responses for every prompt text with the checkpoint in `policy_dir` (see the module doc).
    n_ctx: the smallest context of the models that will score the pool (default: the policy's); prompts
    keep at most half of it (their last tokens); compute_dtype: the policy's dense layers (`ModelConfig`)."""
    policy = load(policy_dir, role="policy", compute_dtype=compute_dtype)
    ctx = min(policy.cfg.n_ctx, n_ctx or policy.cfg.n_ctx)
    world = TextWorld.build(policy_dir, texts, max(1, ctx // 2), policy.hf_config)
    t = default_max_new(ctx, world.prompt_len, max_new)
    graphdef, _ = with_token_ids(policy, world.eos_id, world.pad_id)
    start = time.perf_counter()
    out = sample_many(
        graphdef,
        policy.state,
        world.prompts.ids,
        jax.random.key(seed),
        n,
        max_new=t,
        temperature=temperature,
        batch_size=max(batch_size, n),
        offsets=world.prompts.offsets,
    )
    seconds = time.perf_counter() - start
    logp = np.where(out.mask, out.logprobs, 0.0).sum(axis=1)
    return TextPool(world, out.tokens, out.mask, logp, n, seconds, param_count(policy.cfg))


def samples_table(pool: TextPool, proxies: dict[str, tuple[int, np.ndarray]], gold: np.ndarray) -> pd.DataFrame:
    """The samples table of the module docstring: one block of rows per proxy ({ref: (rm_params, scores)})."""
    sizes = [p for p, _ in proxies.values()]
    if len(set(sizes)) != len(sizes):
        raise UsageError(f"two proxies have the same number of parameters ({sizes}): each proxy is a curve by size")
    world = pool.world
    rows = pool.prompt_index
    resp = pool.tokens[:, world.prompt_len :]
    ids = [" ".join(map(str, r[: int(m.sum())])) for r, m in zip(resp, pool.mask, strict=True)]
    base = pd.DataFrame(
        {
            "prompt": rows,
            "prompt_text": world.prompt_texts(rows),
            "response": ids,
            "response_text": world.response_texts(pool.tokens, pool.mask),
            "n_tokens": pool.mask.sum(axis=1).astype(np.int64),
            "ref_logprob": np.minimum(pool.ref_logprob, 0.0),
            "gold": np.asarray(gold, np.float64),
            "policy_params": pool.policy_params,
        }
    )
    frames = []
    for ref, (n_params, scores) in proxies.items():
        frames.append(base.assign(proxy=np.asarray(scores, np.float64), proxy_ref=ref, rm_params=int(n_params)))
    return pd.concat(frames, ignore_index=True)
