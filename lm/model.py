"""The transformer family: a decoder with an LM head and/or a scalar (reward/value) head.

Default architecture (GPT-2): token + learned position embeddings, `n_layer` pre-LayerNorm blocks of
causal multi-head self-attention and a GELU MLP with `d_ff = 4 * d_model`, a final LayerNorm. The LM
head is *tied* to the token embedding by default (logits = h @ wte^T, no bias); `tie_embeddings=False`
gives a separate bias-free `Linear(d_model, vocab)`. The scalar head is `Linear(d_model, 1)` on the
final normed hidden state. Everything is float32. `ModelConfig` (lm/arch.py, with the parameter
count) also describes the GPT-NeoX and Llama families imported from Hugging Face (`lm.hf`): rotary
positions, RMSNorm, gated MLPs, grouped-query attention, parallel residual; the layers are in
lm/blocks.py. The same `GPT` runs all of them, so every compiled path (the KV-cache sampler,
response log-probs, the scalar head, the PPO grid) serves imported models too.

Modules are split into `(graphdef, state)` with `nnx.split`; the module-level functions below are
plain `jax.jit` functions of those, so callers never pay `nnx.jit` overhead.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from lm.arch import FORBIDDEN, ModelConfig, param_count  # noqa: F401 (re-exported: callers import them from here)
from lm.blocks import Block, make_norm, normal

# The parts of a state that are not the trunk (what `transfer_trunk` leaves alone).
HEADS = ("lm_head", "scalar_head")


class GPT(nnx.Module):
    """GPT-2-style decoder. `lm_head`: next-token logits; `scalar_head`: one scalar per position.

    Reward model: `lm_head=False, scalar_head=True`; PPO policy with a value head: both.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, lm_head: bool = True, scalar_head: bool = False):
        if not (lm_head or scalar_head):
            raise ValueError("GPT needs at least one head (lm_head or scalar_head)")
        d = cfg.d_model
        self.cfg = cfg
        self.has_lm_head = lm_head
        self.has_scalar_head = scalar_head
        self.wte = nnx.Embed(cfg.vocab_size, d, embedding_init=normal(0.02), rngs=rngs)
        if cfg.positions == "learned":
            self.wpe = nnx.Embed(cfg.n_ctx, d, embedding_init=normal(0.01), rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_layer)])
        self.ln_f = make_norm(cfg, rngs)
        if lm_head and not cfg.tie_embeddings:
            self.lm_head = nnx.Linear(
                d, cfg.vocab_size, use_bias=False, kernel_init=normal(0.02), dtype=cfg.dense_dtype, rngs=rngs
            )
        if scalar_head:
            self.scalar_head = nnx.Linear(
                d, 1, use_bias=cfg.scalar_bias, kernel_init=normal(0.02), dtype=cfg.dense_dtype, rngs=rngs
            )

    def init_cache(self, batch: int, length: int):
        """Zeroed KV cache for `batch` rows of up to `length` positions: per block (k, v) [B, KV, C, dh],
        in the embeddings' dtype (float32 unless the state was cast), or bfloat16 under compute_dtype=bfloat16:
        the keys and values come out of the bfloat16 dense layer exactly representable (half the memory, no
        rounding), and attention then reads them in the dtype the uncached forward pass uses."""
        cfg = self.cfg
        shape = (batch, cfg.kv_heads, length, cfg.dh)
        dtype = jnp.bfloat16 if cfg.compute_dtype == "bfloat16" else self.wte.embedding.dtype
        return tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in self.blocks)

    def trunk(self, tokens, cache=None, pos=0, offset=None):
        """Final normed hidden states f32[B, S, d] of `tokens` placed at positions pos..pos+S-1.

        With a cache (from `init_cache`) the new keys/values are written at `pos` and attention reads
        every cached position <= the query's; returns (hidden, new cache or None). offset: None, or
        int[B] left-padding widths (row b's first offset[b] positions are padding: never attended to, and
        its position ids count from the first real token, as Hugging Face's generate does).
        """
        x = self.wte(tokens)
        if self.cfg.positions == "learned":
            positions = pos + jnp.arange(tokens.shape[1])
            if offset is not None:
                positions = jnp.maximum(positions[None, :] - offset[:, None], 0)
            x = x + self.wpe(positions)
        new_cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if cache is None else cache[i], pos, offset)
            new_cache.append(kv)
        return self.ln_f(x), (None if cache is None else tuple(new_cache))

    def logits(self, h):
        """Next-token logits f32[..., V] from final hidden states."""
        if not self.has_lm_head:
            raise ValueError("this model has no LM head (it was built with lm_head=False)")
        if self.cfg.tie_embeddings:
            return self.wte.attend(h)
        out = self.lm_head(h)
        return out.astype(jnp.float32) if self.cfg.compute_dtype == "bfloat16" else out

    def scalar(self, h):
        """Scalar head f32[...] from final hidden states."""
        if not self.has_scalar_head:
            raise ValueError("this model has no scalar head (it was built with scalar_head=False)")
        out = self.scalar_head(h)[..., 0]
        return out.astype(jnp.float32) if self.cfg.compute_dtype == "bfloat16" else out

    def __call__(self, tokens, offset=None):
        """tokens int32[B, S] -> (logits f32[B, S, V] or None, scalar f32[B, S] or None); offset as `trunk`'s."""
        h, _ = self.trunk(tokens, offset=offset)
        logits = self.logits(h) if self.has_lm_head else None
        return logits, (self.scalar(h) if self.has_scalar_head else None)


def _init_state(cfg, key, lm_head, scalar_head):
    return nnx.split(GPT(cfg, rngs=nnx.Rngs(params=key), lm_head=lm_head, scalar_head=scalar_head))[1]


# One compiled program per config (cached) instead of dozens of eagerly compiled initialiser ops.
_init_state_jit = jax.jit(_init_state, static_argnums=(0, 2, 3))


def init(cfg: ModelConfig, key, *, lm_head: bool = True, scalar_head: bool = False):
    """Build and split a fresh model. Returns (graphdef, state); `key` is a PRNG key or an int seed."""
    key = jax.random.key(key) if isinstance(key, int) else key
    graphdef, _ = abstract(cfg, lm_head=lm_head, scalar_head=scalar_head)
    return graphdef, _init_state_jit(cfg, key, bool(lm_head), bool(scalar_head))


def abstract(cfg: ModelConfig, *, lm_head: bool = True, scalar_head: bool = False):
    """(graphdef, state of jax.ShapeDtypeStruct) without allocating: the template `load_state` needs."""
    model = nnx.eval_shape(lambda: GPT(cfg, rngs=nnx.Rngs(0), lm_head=lm_head, scalar_head=scalar_head))
    return nnx.split(model)


def mask_forbidden(logits, forbidden=FORBIDDEN):
    """Set the logits of the `forbidden` tokens (the synthetic world's PAD, BOS and SEP) to -inf: a
    response never contains them. An empty `forbidden` (imported models) leaves the logits as they are."""
    if not forbidden:
        return logits
    return logits.at[..., jnp.array(forbidden)].set(-jnp.inf)


def response_valid(response, cfg: ModelConfig):
    """bool[B, T]: the response positions that are scored (not padding after EOS).

    The synthetic world: every token but PAD (`cfg.pad_id`). When PAD and EOS share an id (a Hugging
    Face tokenizer without a pad token), every position up to and including the first EOS.
    """
    if cfg.pad_id != cfg.eos_id:
        return response != cfg.pad_id
    is_eos = (response == cfg.eos_id).astype(jnp.int32)
    return (jnp.cumsum(is_eos, axis=1) - is_eos) == 0


@jax.jit
def forward(graphdef, state, tokens, offset=None):
    """tokens int32[B, S] -> (logits f32[B, S, V] | None, scalar f32[B, S] | None); one causal pass.
    offset: None or int[B] left-padding widths (`GPT.trunk`)."""
    return nnx.merge(graphdef, state)(tokens, offset)


def response_forward(model: GPT, tokens, prompt_len, temperature=1.0, offset=None):
    """One teacher-forced causal pass over prompt ++ response, read at the response positions.

    Arguments: model a merged GPT with an LM head; tokens int32[B, P+T]; prompt_len P; temperature
    (a float or a traced scalar: logits / temperature, PAD/BOS/SEP masked to -inf as the sampler does).
    Returns (logp f32[B, T] of each response token, not masked; log_probs f32[B, T, V] the whole
    next-token log-softmax at each response position; h f32[B, T, d] the final hidden states there).
    Traceable (use inside jit, grad, vmap); position P-1+t predicts response token t. offset: None or
    int[B] left-padding widths of the prompts (`GPT.trunk`).
    """
    h, _ = model.trunk(tokens[:, :-1], offset=offset)
    h = h[:, prompt_len - 1 :]
    logits = model.logits(h).astype(jnp.float32)  # a no-op cast unless the state is bf16
    log_probs = jax.nn.log_softmax(mask_forbidden(logits, model.cfg.forbidden) / temperature, axis=-1)
    logp = jnp.take_along_axis(log_probs, tokens[:, prompt_len:, None], axis=-1)[..., 0]
    return logp, log_probs, h


def response_logprobs_traced(graphdef, state, tokens, prompt_len, temperature=1.0, offset=None):
    """`response_logprobs` without its checks and jit: traceable, temperature may be traced. f32[B, T]."""
    model = nnx.merge(graphdef, state)
    logp, _, _ = response_forward(model, tokens, prompt_len, temperature, offset)
    return jnp.where(response_valid(tokens[:, prompt_len:], model.cfg), logp, 0.0)


_response_logprobs_jit = jax.jit(response_logprobs_traced, static_argnames=("prompt_len", "temperature"))


def response_logprobs(graphdef, state, tokens, prompt_len: int, temperature: float = 1.0, offset=None):
    """Teacher-forced log p(token_t | prefix) of each response position, one causal forward.

    Arguments: tokens int32[B, P+T] (prompt ++ response), prompt_len P, temperature (logits / T;
    PAD/BOS/SEP are masked exactly as the sampler masks them, so the two agree).
    offset: None or int[B] left-padding widths of the prompts (as the sampler took them).
    Returns f32[B, T]; 0 where the token is PAD (callers mask with the response mask anyway).
    Differentiable in `state`; callable inside jit, grad and vmap (prompt_len and temperature are static).
    """
    if tokens.ndim != 2 or not 1 <= prompt_len < tokens.shape[1]:
        raise ValueError(
            f"response_logprobs: need tokens [B, P+T] with 1 <= P < P+T, got {tokens.shape} and P={prompt_len}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    offset = None if offset is None else jnp.asarray(offset, jnp.int32)
    return _response_logprobs_jit(
        graphdef, state, tokens, prompt_len=int(prompt_len), temperature=float(temperature), offset=offset
    )


@partial(jax.jit, static_argnames=("prompt_len", "temperature"))
def response_group_logprobs(graphdef, state, tokens, groups, prompt_len: int, temperature: float = 1.0):
    """Teacher-forced log P(the group of each response token | prefix): the log of the summed next-token
    probabilities of every token in its group (groups int32[V]: each token's group id, e.g. `World.canon`, where a
    symbol's forms share one). f32[B, T]; 0 where the token is PAD. With singleton groups: `response_logprobs`."""
    model = nnx.merge(graphdef, state)
    _, log_probs, _ = response_forward(model, tokens, prompt_len, temperature)
    resp = tokens[:, prompt_len:]
    same = groups[None, None, :] == groups[resp][..., None]  # [B, T, V]
    lg = jax.nn.logsumexp(jnp.where(same, log_probs, -jnp.inf), axis=-1)
    return jnp.where(response_valid(resp, model.cfg), lg, 0.0)


def _scalar_at_end(graphdef, state, tokens, response_mask, prompt_len, offset=None):
    _, values = nnx.merge(graphdef, state)(tokens, offset)
    # Last response token: EOS, or the last token of a truncated response.
    last = prompt_len + jnp.sum(response_mask, axis=1).astype(jnp.int32) - 1
    return jnp.take_along_axis(values, jnp.maximum(last, prompt_len - 1)[:, None], axis=1)[:, 0]


_scalar_at_end_jit = jax.jit(_scalar_at_end, static_argnames=("prompt_len",))


def scalar_at_end(graphdef, state, tokens, response_mask, prompt_len: int, offset=None):
    """The scalar head read at the last response token. Returns f32[B].

    Arguments: tokens int32[B, P+T], response_mask bool[B, T] (True up to and including EOS),
    prompt_len P; offset None or int[B] left-padding widths of the prompts (`GPT.trunk`). An empty
    response reads the scalar at the prompt's last token (SEP).
    """
    if tokens.ndim != 2 or response_mask.shape != (tokens.shape[0], tokens.shape[1] - prompt_len):
        raise ValueError(
            f"scalar_at_end: tokens {tokens.shape} and response_mask {response_mask.shape} "
            f"do not match prompt_len={prompt_len}"
        )
    return _scalar_at_end_jit(graphdef, state, tokens, response_mask, prompt_len=int(prompt_len), offset=offset)


def _flat(state) -> dict:
    return {
        jax.tree_util.keystr(p, simple=True, separator="/"): x
        for p, x in jax.tree_util.tree_flatten_with_path(state)[0]
    }


def transfer_trunk(dst_state, src_state):
    """Copy embeddings, blocks and final norm of `src_state` into a copy of `dst_state`.

    Use it to start a reward model (or a value-headed policy) from a pretrained LM of the same
    ModelConfig; heads of `dst_state` are kept. Returns the new state (inputs are not modified).
    """
    src = _flat(src_state)
    paths, treedef = jax.tree_util.tree_flatten_with_path(dst_state)
    leaves = []
    for p, x in paths:
        name = jax.tree_util.keystr(p, simple=True, separator="/")
        if name.split("/")[0] in HEADS:
            leaves.append(x)
            continue
        if name not in src or src[name].shape != x.shape:
            raise ValueError(f"transfer_trunk: source has no trunk parameter '{name}' of shape {x.shape}")
        leaves.append(jnp.array(src[name], copy=True))
    return jax.tree_util.tree_unflatten(treedef, leaves)
