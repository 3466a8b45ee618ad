"""`ModelConfig`: the sizes and architecture options of one member of the transformer family, and
`param_count`.

The defaults are the synthetic world's GPT-2: learned positions, pre-LayerNorm (eps 1e-5), fused
qkv with biases, a GELU (tanh approximation) MLP 4x wide, sequential residual, tied LM head, the
world's special tokens (core/tokens.py). The other options exist for checkpoints imported from
Hugging Face (`lm.hf`): GPT-NeoX / Pythia (rotary on a fraction of each head, parallel residual,
exact GELU), the Llama family (RMSNorm, rotary with theta and Llama-3 scaling, gated SiLU MLP,
grouped-query attention, bias-free projections; Qwen2: qkv biases).

Parameter count (what `param_count` returns, and what the initialised state holds), with
dh = head_dim, H heads, KV key/value heads, f = d_ff, n = 2 per LayerNorm and 1 per RMSNorm:
    V*d (+ n_ctx*d for learned positions)            embeddings
  + n_layer * (2*n*d                                  two norms
               + d*(H+2KV)*dh (+ (H+2KV)*dh)          fused qkv (+ bias)
               + H*dh*d (+ d)                         attention out (+ bias)
               + d*f*g (+ f*g) + f*d (+ d))           MLP in (g = 2 when gated) and out (+ biases)
  + n*d                                               final norm
  + V*d   if lm_head and not tied                     separate LM head
  + d (+ 1 with scalar_bias) if scalar_head           scalar head
With the defaults this is V*d + n_ctx*d + n_layer*(12*d^2 + 13*d) + 2*d.
"""

from __future__ import annotations

import dataclasses

from core.errors import UsageError
from core.store import OMIT_DEFAULT
from core.tokens import BOS, EOS, N_SPECIAL, PAD, SEP

# Tokens a synthetic response may never contain: masked to -inf when sampling and when scoring responses.
FORBIDDEN = (PAD, BOS, SEP)
NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rotary")
MLPS = ("plain", "gated")  # plain: out(act(fc(x))); gated: out(act(gate(x)) * up(x)), e.g. SwiGLU
ACTIVATIONS = ("gelu_new", "gelu", "silu", "relu")
ROPE_TYPES = ("default", "linear", "llama3")
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes and architecture of one member of the family (defaults: the synthetic GPT-2)."""

    vocab_size: int  # tokens, specials included
    n_ctx: int  # longest sequence (learned positions; the rotary models' max_position_embeddings)
    n_layer: int  # transformer blocks
    d_model: int  # residual width
    n_head: int  # attention (query) heads
    tie_embeddings: bool = True  # LM head shares the token embedding matrix
    # architecture options (Hugging Face imports); the defaults are the synthetic GPT-2
    norm: str = "layernorm"  # NORMS
    norm_eps: float = 1e-5
    positions: str = "learned"  # POSITIONS
    rotary_frac: float = 1.0  # fraction of each head's dimensions rotated (GPT-NeoX rotary_pct)
    rope_theta: float = 10000.0
    rope_scaling: tuple = ()  # sorted (key, value) pairs of HF's rope scaling: rope_type (ROPE_TYPES), factor, ...
    mlp: str = "plain"  # MLPS
    activation: str = "gelu_new"  # ACTIVATIONS: gelu_new is the tanh approximation, gelu the exact erf form
    d_ff: int | None = None  # MLP hidden width; None: 4 * d_model
    n_kv_head: int | None = None  # key/value heads (grouped-query attention); None: n_head
    head_dim: int | None = None  # None: d_model // n_head
    qkv_bias: bool = True
    proj_bias: bool = True  # attention output projection
    mlp_bias: bool = True
    parallel_residual: bool = False  # x + attn(ln_1(x)) + mlp(ln_2(x)) (GPT-NeoX)
    scalar_bias: bool = True  # the scalar head has a bias (HF's `score` head has none)
    # token ids the decoder treats specially; an imported model has its own (forbidden usually empty)
    pad_id: int = PAD  # written after EOS; a response's PAD positions score 0
    eos_id: int = EOS  # ends a response (-1: none)
    forbidden: tuple = FORBIDDEN  # never sampled nor scored: logits set to -inf
    # the dense layers' matmuls (qkv, attention out, MLP, untied LM head, scalar head) in bfloat16, weights kept
    # float32; embeddings, norms, the residual stream, softmax and the logits' log-softmax stay float32
    compute_dtype: str = dataclasses.field(default="float32", metadata=OMIT_DEFAULT)

    def __post_init__(self):
        # JSON round trips turn tuples into lists (and a rope dict may come straight from config.json)
        rs = self.rope_scaling
        rs = tuple(sorted((str(k), v) for k, v in (rs.items() if isinstance(rs, dict) else rs)))
        object.__setattr__(self, "rope_scaling", rs)
        object.__setattr__(self, "forbidden", tuple(int(t) for t in self.forbidden))
        for name in ("vocab_size", "n_ctx", "n_layer", "d_model", "n_head"):
            _positive(name, getattr(self, name))
        for name in ("d_ff", "n_kv_head", "head_dim"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if self.vocab_size <= N_SPECIAL:
            raise UsageError(f"ModelConfig.vocab_size must exceed the {N_SPECIAL} special tokens")
        if self.head_dim is None and self.d_model % self.n_head:
            raise UsageError(f"ModelConfig.d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.n_head % self.kv_heads:
            raise UsageError(f"ModelConfig.n_head={self.n_head} is not a multiple of n_kv_head={self.n_kv_head}")
        for name, allowed in (("norm", NORMS), ("positions", POSITIONS), ("mlp", MLPS), ("activation", ACTIVATIONS)):
            if getattr(self, name) not in allowed:
                raise UsageError(f"ModelConfig.{name}={getattr(self, name)!r}; choose from {', '.join(allowed)}")
        if self.rope.get("rope_type", "default") not in ROPE_TYPES:
            raise UsageError(f"ModelConfig.rope_scaling: rope type {self.rope['rope_type']!r} is not supported")
        if self.positions == "rotary" and (not 0.0 < self.rotary_frac <= 1.0 or self.rotary_dims % 2):
            raise UsageError(f"ModelConfig.rotary_frac={self.rotary_frac} must rotate an even number of dimensions")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise UsageError(
                f"ModelConfig.compute_dtype={self.compute_dtype!r}; choose from {', '.join(COMPUTE_DTYPES)}"
            )
        if not self.norm_eps > 0:
            raise UsageError(f"ModelConfig.norm_eps must be > 0, got {self.norm_eps!r}")

    @property
    def dh(self) -> int:
        """Width of one attention head."""
        return self.head_dim or self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def ff(self) -> int:
        """MLP hidden width."""
        return self.d_ff or 4 * self.d_model

    @property
    def rotary_dims(self) -> int:
        """Dimensions of each head that rotary embeddings rotate (HF: int(head_dim * fraction))."""
        return int(self.dh * self.rotary_frac)

    @property
    def dense_dtype(self):
        """The dense layers' computation dtype: None (float32: the layers' own default) or bfloat16."""
        import jax.numpy as jnp  # noqa: PLC0415 - arch stays importable without JAX for configs

        return None if self.compute_dtype == "float32" else jnp.bfloat16

    @property
    def rope(self) -> dict:
        return dict(self.rope_scaling)


def _positive(name, v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise UsageError(f"ModelConfig.{name} must be a positive integer, got {v!r}")


def param_count(cfg: ModelConfig, lm_head: bool = True, scalar_head: bool = False) -> int:
    """Exact number of parameters of `GPT(cfg, lm_head=..., scalar_head=...)` (formula in the module doc)."""
    d, v, f, dh = cfg.d_model, cfg.vocab_size, cfg.ff, cfg.dh
    norm = (2 if cfg.norm == "layernorm" else 1) * d
    qkv = (cfg.n_head + 2 * cfg.kv_heads) * dh
    gates = 2 if cfg.mlp == "gated" else 1
    block = 2 * norm + d * qkv + (qkv if cfg.qkv_bias else 0) + cfg.n_head * dh * d + (d if cfg.proj_bias else 0)
    block += d * f * gates + f * d + ((f * gates + d) if cfg.mlp_bias else 0)
    n = v * d + (cfg.n_ctx * d if cfg.positions == "learned" else 0) + cfg.n_layer * block + norm
    if lm_head and not cfg.tie_embeddings:
        n += v * d
    if scalar_head:
        n += d + (1 if cfg.scalar_bias else 0)
    return n
