"""The supported Hugging Face architectures: config.json <-> `ModelConfig`, and tensor names <-> the
flat state of `lm.model.GPT` ("blocks/0/attn/qkv/kernel", ...).

Families (by config.json's `model_type`):
- gpt2: GPT2LMHeadModel / GPT2ForSequenceClassification / GPT2Model (Conv1D weights are [in, out]).
- gpt_neox: Pythia (rotary on `partial_rotary_factor` / `rotary_pct` of each head, parallel residual,
  exact GELU; the fused query_key_value holds [q, k, v] per head and is reordered to ours).
- llama, qwen2, mistral (SmolLM is llama): RMSNorm, rotary (theta; linear and llama3 scaling), SwiGLU,
  grouped-query attention; q, k, v (and gate, up) are fused into one kernel. Qwen2 has qkv biases.
  Mistral's sliding window is honoured by capping the context at the window (attention is exact there).
torch Linear weights are [out, in]; ours are [in, out].
"""

from __future__ import annotations

import numpy as np

from core.errors import UsageError
from core.tokens import BOS
from lm.arch import FORBIDDEN, ModelConfig

FAMILIES = ("gpt2", "gpt_neox", "llama", "qwen2", "mistral")
PREFIX = {"gpt2": "transformer.", "gpt_neox": "gpt_neox.", "llama": "model.", "qwen2": "model.", "mistral": "model."}
EMBED = {"gpt2": "wte.weight", "gpt_neox": "embed_in.weight"}  # others: embed_tokens.weight
ARCH = {
    "gpt2": ("GPT2LMHeadModel", "GPT2ForSequenceClassification"),
    "gpt_neox": ("GPTNeoXForCausalLM", "GPTNeoXForSequenceClassification"),
    "llama": ("LlamaForCausalLM", "LlamaForSequenceClassification"),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2ForSequenceClassification"),
    "mistral": ("MistralForCausalLM", "MistralForSequenceClassification"),
}
# the untied LM head's name on disk (GPT-NeoX: transformers 5 says lm_head in memory, embed_out in files)
LM_HEAD = {"gpt_neox": ("embed_out.weight", "lm_head.weight")}  # others: lm_head.weight
ACT = {"gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}
ACT["swish"] = "silu"


def family_of(hf: dict, where: str) -> str:
    kind = hf.get("model_type")
    if kind not in FAMILIES:
        archs = ", ".join(hf.get("architectures") or []) or "none"
        raise UsageError(
            f"{where}: architecture {kind!r} (architectures: {archs}) is not supported; "
            f"supported model_type: {', '.join(FAMILIES)}"
        )
    return kind


def _get(hf: dict, key: str, default=None):
    v = hf.get(key)
    return default if v is None else v


def _rope(hf: dict, default_frac: float, default_theta: float) -> tuple[float, float, dict]:
    """(rotary fraction, theta, scaling) from transformers 5's rope_parameters or the older keys."""
    rp = dict(hf.get("rope_parameters") or {})
    legacy = dict(hf.get("rope_scaling") or {})
    frac = rp.get("partial_rotary_factor", _get(hf, "partial_rotary_factor", _get(hf, "rotary_pct", default_frac)))
    theta = rp.get("rope_theta", _get(hf, "rope_theta", _get(hf, "rotary_emb_base", default_theta)))
    scaling = {**legacy, **{k: v for k, v in rp.items() if k not in ("rope_theta", "partial_rotary_factor")}}
    if "type" in scaling:
        scaling.setdefault("rope_type", scaling.pop("type"))
    scaling = {k: v for k, v in scaling.items() if v is not None}
    if scaling.get("rope_type", "default") == "default":
        scaling = {}
    return float(frac), float(theta), scaling


def _ids(hf: dict) -> dict:
    """pad/eos ids of an imported model: its own; PAD is EOS when the tokenizer has no pad token."""
    eos = hf.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) and eos else eos
    pad = hf.get("pad_token_id")
    eos = -1 if eos is None else int(eos)
    forbidden = tuple(hf.get("overopt_forbidden") or ())  # written by `export` for the synthetic world
    return {"eos_id": eos, "pad_id": eos if pad is None else int(pad), "forbidden": forbidden}


def model_config(hf: dict, where: str) -> tuple[str, ModelConfig]:
    """(family, ModelConfig) of a checkpoint's config.json; an unsupported option is a UsageError."""
    kind = family_of(hf, where)
    act_name = _get(hf, "activation_function" if kind == "gpt2" else "hidden_act", "gelu_new" if kind == "gpt2" else "")
    if act_name not in ACT:
        raise UsageError(f"{where}: activation {act_name!r} is not supported; supported: {', '.join(ACT)}")
    common = {"activation": ACT[act_name], **_ids(hf)}
    try:
        if kind == "gpt2":
            if hf.get("scale_attn_by_inverse_layer_idx") or not _get(hf, "scale_attn_weights", True):
                raise UsageError(f"{where}: GPT-2 attention scaling options are not supported")
            d = hf["n_embd"]
            return kind, ModelConfig(
                vocab_size=hf["vocab_size"],
                n_ctx=hf["n_positions"],
                n_layer=hf["n_layer"],
                d_model=d,
                n_head=hf["n_head"],
                tie_embeddings=_get(hf, "tie_word_embeddings", True),
                norm_eps=float(_get(hf, "layer_norm_epsilon", 1e-5)),
                d_ff=None if hf.get("n_inner") in (None, 4 * d) else hf["n_inner"],
                **common,
            )
        if kind == "gpt_neox":
            frac, theta, scaling = _rope(hf, 0.25, 10000.0)
            bias = _get(hf, "attention_bias", True)
            return kind, ModelConfig(
                vocab_size=hf["vocab_size"],
                n_ctx=hf["max_position_embeddings"],
                n_layer=hf["num_hidden_layers"],
                d_model=hf["hidden_size"],
                n_head=hf["num_attention_heads"],
                tie_embeddings=_get(hf, "tie_word_embeddings", False),
                norm_eps=float(_get(hf, "layer_norm_eps", 1e-5)),
                positions="rotary",
                rotary_frac=frac,
                rope_theta=theta,
                rope_scaling=scaling,
                d_ff=hf["intermediate_size"],
                qkv_bias=bias,
                proj_bias=bias,
                parallel_residual=_get(hf, "use_parallel_residual", True),
                **common,
            )
        if kind == "qwen2" and hf.get("use_sliding_window"):
            raise UsageError(f"{where}: Qwen2 with use_sliding_window is not supported")
        frac, theta, scaling = _rope(hf, 1.0, 10000.0)
        n_ctx = hf["max_position_embeddings"]
        if kind == "mistral" and hf.get("sliding_window"):
            n_ctx = min(n_ctx, int(hf["sliding_window"]))
        attn_bias = _get(hf, "attention_bias", False)
        return kind, ModelConfig(
            vocab_size=hf["vocab_size"],
            n_ctx=n_ctx,
            n_layer=hf["num_hidden_layers"],
            d_model=hf["hidden_size"],
            n_head=hf["num_attention_heads"],
            tie_embeddings=_get(hf, "tie_word_embeddings", False),
            norm="rmsnorm",
            norm_eps=float(_get(hf, "rms_norm_eps", 1e-6)),
            positions="rotary",
            rotary_frac=frac,
            rope_theta=theta,
            rope_scaling=scaling,
            mlp="gated",
            d_ff=hf["intermediate_size"],
            n_kv_head=_get(hf, "num_key_value_heads", hf["num_attention_heads"]),
            head_dim=_get(hf, "head_dim", hf["hidden_size"] // hf["num_attention_heads"]),
            qkv_bias=True if kind == "qwen2" else attn_bias,
            proj_bias=False if kind == "qwen2" else attn_bias,
            mlp_bias=_get(hf, "mlp_bias", False),
            **common,
        )
    except KeyError as e:
        raise UsageError(f"{where}: config.json has no {e.args[0]!r} (needed for model_type {kind!r})") from None


def export_family(cfg: ModelConfig) -> str:
    """The Hugging Face family that represents `cfg` exactly; none is a UsageError."""
    plain_heads = cfg.kv_heads == cfg.n_head and cfg.dh * cfg.n_head == cfg.d_model
    if cfg.norm == "layernorm" and cfg.mlp == "plain" and plain_heads and cfg.mlp_bias:
        if cfg.positions == "learned" and cfg.qkv_bias and cfg.proj_bias and not cfg.parallel_residual:
            return "gpt2"
        if cfg.positions == "rotary" and cfg.qkv_bias == cfg.proj_bias:
            return "gpt_neox"
    if cfg.norm == "rmsnorm" and cfg.mlp == "gated" and cfg.positions == "rotary" and not cfg.parallel_residual:
        if cfg.rotary_frac == 1.0 and not cfg.mlp_bias:
            if cfg.qkv_bias and not cfg.proj_bias:
                return "qwen2"
            if cfg.qkv_bias == cfg.proj_bias:
                return "llama"
    raise UsageError(f"no Hugging Face architecture represents this model exactly: {cfg}")


def hf_config(cfg: ModelConfig, family: str, scalar: bool) -> dict:
    """config.json of `cfg` as `family` (a causal LM, or a one-label sequence classifier if `scalar`)."""
    act = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}[cfg.activation]
    out = {
        "overopt_forbidden": list(cfg.forbidden),  # the synthetic world's never-sampled tokens (empty: none)
        "architectures": [ARCH[family][1 if scalar else 0]],
        "model_type": family,
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": cfg.tie_embeddings,
        "eos_token_id": None if cfg.eos_id < 0 else cfg.eos_id,
        "bos_token_id": BOS if cfg.forbidden == FORBIDDEN else None,  # the synthetic world's; else `extra`
        "pad_token_id": None if cfg.pad_id < 0 else cfg.pad_id,
        "dtype": "float32",
    }
    if scalar:
        out.update(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    if family == "gpt2":
        out.update(
            n_positions=cfg.n_ctx,
            n_embd=cfg.d_model,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_inner=cfg.d_ff,
            activation_function=act,
            layer_norm_epsilon=cfg.norm_eps,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
        return out
    rope = {"rope_type": "default", **cfg.rope, "rope_theta": cfg.rope_theta}
    out.update(
        max_position_embeddings=cfg.n_ctx,
        num_hidden_layers=cfg.n_layer,
        hidden_size=cfg.d_model,
        num_attention_heads=cfg.n_head,
        intermediate_size=cfg.ff,
        hidden_act=act,
        rope_theta=cfg.rope_theta,
        rope_scaling=cfg.rope or None,
    )
    if family == "gpt_neox":
        rope["partial_rotary_factor"] = cfg.rotary_frac
        out.update(
            rope_parameters=rope,
            rotary_pct=cfg.rotary_frac,
            rotary_emb_base=cfg.rope_theta,
            layer_norm_eps=cfg.norm_eps,
            use_parallel_residual=cfg.parallel_residual,
            attention_bias=cfg.qkv_bias,
            hidden_dropout=0.0,
            attention_dropout=0.0,
        )
        return out
    out.update(
        rope_parameters=rope,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.dh,
        rms_norm_eps=cfg.norm_eps,
        attention_dropout=0.0,
    )
    if family == "llama":
        out.update(attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias)
    return out


def _t(w):
    return np.asarray(w).T


# A tensor's mapping: (our flat name, the checkpoint's names, theirs -> ours, ours -> theirs). `_layout` lists
# every tensor of a family's trunk once; `to_ours` and `to_hf` read that one list in the two directions.
_COPY = (lambda ws: ws[0], lambda a: [a])
_TRANSPOSE = (lambda ws: _t(ws[0]), lambda a: [_t(a)])


def _fused(cuts, transpose: bool):
    """Several of their tensors as one of ours, concatenated on the output axis (torch [out, in] weights are
    transposed first), and split back at `cuts`."""
    if transpose:
        return (lambda ws: np.concatenate([_t(w) for w in ws], axis=1),
                lambda a: [_t(x) for x in np.split(np.asarray(a), cuts, axis=1)])  # fmt: skip
    return (lambda ws: np.concatenate([np.asarray(w) for w in ws]), lambda a: np.split(np.asarray(a), cuts))


def _neox_qkv(h: int, dh: int, kernel: bool):
    """GPT-NeoX's fused query_key_value ([q, k, v] per head, torch [out, in]) <-> ours ([q | k | v], [in, out])."""
    per_head, ours = ((h, 3, dh, -1), (3, h, dh, -1)) if kernel else ((h, 3, dh), (3, h, dh))
    axes = (1, 0, 2, 3) if kernel else (1, 0, 2)
    flat = (3 * h * dh, -1) if kernel else (-1,)

    def to_ours(ws):
        x = np.asarray(ws[0]).reshape(per_head).transpose(axes).reshape(flat)
        return x.T if kernel else x

    def to_hf(a):
        a = np.asarray(a)
        return [(a.T if kernel else a).reshape(ours).transpose(axes).reshape(flat)]

    return to_ours, to_hf


def _layout(family: str, cfg: ModelConfig, p: str) -> list[tuple[str, tuple[str, ...], object, object]]:
    """Every trunk tensor of `family` (their names under prefix `p`): see `_COPY`."""
    out = []

    def add(ours, theirs, how=_COPY):
        out.append((ours, (theirs,) if isinstance(theirs, str) else tuple(theirs), *how))

    if family == "gpt2":  # Conv1D weights are [in, out], as ours
        add("wte/embedding", p + "wte.weight")
        add("wpe/embedding", p + "wpe.weight")
        names = {"ln_1": "ln_1", "ln_2": "ln_2", "attn/qkv": "attn.c_attn", "attn/proj": "attn.c_proj"}
        for i in range(cfg.n_layer):
            for ours, theirs in (names | {"fc": "mlp.c_fc", "out": "mlp.c_proj"}).items():
                add(
                    f"blocks/{i}/{ours}/" + ("scale" if ours.startswith("ln") else "kernel"),
                    f"{p}h.{i}.{theirs}.weight",
                )
                add(f"blocks/{i}/{ours}/bias", f"{p}h.{i}.{theirs}.bias")
        add("ln_f/scale", p + "ln_f.weight")
        add("ln_f/bias", p + "ln_f.bias")
        return out
    if family == "gpt_neox":
        add("wte/embedding", p + "embed_in.weight")
        for i in range(cfg.n_layer):
            src, dst = f"{p}layers.{i}.", f"blocks/{i}/"
            for ours, theirs in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
                add(f"{dst}{ours}/scale", f"{src}{theirs}.weight")
                add(f"{dst}{ours}/bias", f"{src}{theirs}.bias")
            add(dst + "attn/qkv/kernel", src + "attention.query_key_value.weight", _neox_qkv(cfg.n_head, cfg.dh, True))
            if cfg.qkv_bias:
                add(dst + "attn/qkv/bias", src + "attention.query_key_value.bias", _neox_qkv(cfg.n_head, cfg.dh, False))
            for ours, theirs, bias in (
                ("attn/proj", "attention.dense", cfg.proj_bias),
                ("fc", "mlp.dense_h_to_4h", True),
                ("out", "mlp.dense_4h_to_h", True),
            ):
                add(f"{dst}{ours}/kernel", f"{src}{theirs}.weight", _TRANSPOSE)
                if bias:
                    add(f"{dst}{ours}/bias", f"{src}{theirs}.bias")
        add("ln_f/scale", p + "final_layer_norm.weight")
        add("ln_f/bias", p + "final_layer_norm.bias")
        return out
    add("wte/embedding", p + "embed_tokens.weight")  # the Llama family
    add("ln_f/scale", p + "norm.weight")
    cuts = [cfg.n_head * cfg.dh, (cfg.n_head + cfg.kv_heads) * cfg.dh]
    for i in range(cfg.n_layer):
        src, dst = f"{p}layers.{i}.", f"blocks/{i}/"
        add(dst + "ln_1/scale", src + "input_layernorm.weight")
        add(dst + "ln_2/scale", src + "post_attention_layernorm.weight")
        qkv, gate_up = [f"{src}self_attn.{x}_proj." for x in "qkv"], [f"{src}mlp.{x}_proj." for x in ("gate", "up")]
        add(dst + "attn/qkv/kernel", [n + "weight" for n in qkv], _fused(cuts, True))
        if cfg.qkv_bias:
            add(dst + "attn/qkv/bias", [n + "bias" for n in qkv], _fused(cuts, False))
        add(dst + "attn/proj/kernel", src + "self_attn.o_proj.weight", _TRANSPOSE)
        if cfg.proj_bias:
            add(dst + "attn/proj/bias", src + "self_attn.o_proj.bias")
        add(dst + "fc/kernel", [n + "weight" for n in gate_up], _fused([cfg.ff], True))
        add(dst + "out/kernel", src + "mlp.down_proj.weight", _TRANSPOSE)
        if cfg.mlp_bias:
            add(dst + "fc/bias", [n + "bias" for n in gate_up], _fused([cfg.ff], False))
            add(dst + "out/bias", src + "mlp.down_proj.bias")
    return out


def to_ours(family: str, cfg: ModelConfig, w: dict, prefix: str) -> dict:
    """Our flat trunk from the checkpoint's tensors `w` (names under `prefix`); a missing one is a KeyError."""
    return {ours: to([w[n] for n in theirs]) for ours, theirs, to, _ in _layout(family, cfg, prefix)}


def to_hf(family: str, cfg: ModelConfig, s: dict) -> dict:
    """The checkpoint's tensors (transformers' names, under the family's prefix) from our flat trunk `s`."""
    out = {}
    for ours, theirs, _, back in _layout(family, cfg, PREFIX[family]):
        out.update(zip(theirs, back(s[ours]), strict=True))
    return out
