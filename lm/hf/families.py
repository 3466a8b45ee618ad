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
        out.update(attention_bias=cfg.qkv_bias, mlp_bias=False)
    return out


def _t(w):
    return np.asarray(w).T


def to_ours(family: str, cfg: ModelConfig, w: dict, prefix: str) -> dict:
    """Our flat trunk (and LM head if present) from the checkpoint's tensors `w` (names under `prefix`)."""
    p = prefix
    if family == "gpt2":
        out = {"wte/embedding": w[p + "wte.weight"], "wpe/embedding": w[p + "wpe.weight"]}
        names = {"ln_1": "ln_1", "ln_2": "ln_2", "attn/qkv": "attn.c_attn", "attn/proj": "attn.c_proj"}
        names.update(fc="mlp.c_fc", out="mlp.c_proj")
        for i in range(cfg.n_layer):
            for ours, theirs in names.items():
                src, dst = f"{p}h.{i}.{theirs}.", f"blocks/{i}/{ours}/"
                out[dst + ("scale" if ours.startswith("ln") else "kernel")] = w[src + "weight"]
                out[dst + "bias"] = w[src + "bias"]
        out["ln_f/scale"], out["ln_f/bias"] = w[p + "ln_f.weight"], w[p + "ln_f.bias"]
        return out
    if family == "gpt_neox":
        h, dh = cfg.n_head, cfg.dh
        out = {"wte/embedding": w[p + "embed_in.weight"]}
        for i in range(cfg.n_layer):
            src, dst = f"{p}layers.{i}.", f"blocks/{i}/"
            for ours, theirs in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
                out[f"{dst}{ours}/scale"] = w[src + theirs + ".weight"]
                out[f"{dst}{ours}/bias"] = w[src + theirs + ".bias"]
            qkv = np.asarray(w[src + "attention.query_key_value.weight"])  # [H*3*dh, d], [q, k, v] per head
            out[dst + "attn/qkv/kernel"] = qkv.reshape(h, 3, dh, -1).transpose(1, 0, 2, 3).reshape(3 * h * dh, -1).T
            if cfg.qkv_bias:
                b = np.asarray(w[src + "attention.query_key_value.bias"])
                out[dst + "attn/qkv/bias"] = b.reshape(h, 3, dh).transpose(1, 0, 2).reshape(-1)
            for ours, theirs, bias in (
                ("attn/proj", "attention.dense", cfg.proj_bias),
                ("fc", "mlp.dense_h_to_4h", True),
                ("out", "mlp.dense_4h_to_h", True),
            ):
                out[f"{dst}{ours}/kernel"] = _t(w[f"{src}{theirs}.weight"])
                if bias:
                    out[f"{dst}{ours}/bias"] = w[f"{src}{theirs}.bias"]
        out["ln_f/scale"], out["ln_f/bias"] = w[p + "final_layer_norm.weight"], w[p + "final_layer_norm.bias"]
        return out
    out = {"wte/embedding": w[p + "embed_tokens.weight"], "ln_f/scale": w[p + "norm.weight"]}
    for i in range(cfg.n_layer):
        src, dst = f"{p}layers.{i}.", f"blocks/{i}/"
        out[dst + "ln_1/scale"] = w[src + "input_layernorm.weight"]
        out[dst + "ln_2/scale"] = w[src + "post_attention_layernorm.weight"]
        qkv = [f"{src}self_attn.{x}_proj." for x in "qkv"]
        out[dst + "attn/qkv/kernel"] = np.concatenate([_t(w[n + "weight"]) for n in qkv], axis=1)
        if cfg.qkv_bias:
            out[dst + "attn/qkv/bias"] = np.concatenate([np.asarray(w[n + "bias"]) for n in qkv])
        out[dst + "attn/proj/kernel"] = _t(w[src + "self_attn.o_proj.weight"])
        if cfg.proj_bias:
            out[dst + "attn/proj/bias"] = w[src + "self_attn.o_proj.bias"]
        gate_up = [f"{src}mlp.{x}_proj." for x in ("gate", "up")]
        out[dst + "fc/kernel"] = np.concatenate([_t(w[n + "weight"]) for n in gate_up], axis=1)
        out[dst + "out/kernel"] = _t(w[src + "mlp.down_proj.weight"])
        if cfg.mlp_bias:
            out[dst + "fc/bias"] = np.concatenate([np.asarray(w[n + "bias"]) for n in gate_up])
            out[dst + "out/bias"] = w[src + "mlp.down_proj.bias"]
    return out


def to_hf(family: str, cfg: ModelConfig, s: dict) -> dict:
    """The checkpoint's tensors (transformers' names, under the family's prefix) from our flat trunk `s`."""
    p = PREFIX[family]
    if family == "gpt2":
        out = {p + "wte.weight": s["wte/embedding"], p + "wpe.weight": s["wpe/embedding"]}
        names = {"ln_1": "ln_1", "ln_2": "ln_2", "attn/qkv": "attn.c_attn", "attn/proj": "attn.c_proj"}
        names.update(fc="mlp.c_fc", out="mlp.c_proj")
        for i in range(cfg.n_layer):
            for ours, theirs in names.items():
                src, dst = f"blocks/{i}/{ours}/", f"{p}h.{i}.{theirs}."
                out[dst + "weight"] = s[src + ("scale" if ours.startswith("ln") else "kernel")]
                out[dst + "bias"] = s[src + "bias"]
        out[p + "ln_f.weight"], out[p + "ln_f.bias"] = s["ln_f/scale"], s["ln_f/bias"]
        return out
    if family == "gpt_neox":
        h, dh = cfg.n_head, cfg.dh
        out = {p + "embed_in.weight": s["wte/embedding"]}
        for i in range(cfg.n_layer):
            src, dst = f"blocks/{i}/", f"{p}layers.{i}."
            for ours, theirs in (("ln_1", "input_layernorm"), ("ln_2", "post_attention_layernorm")):
                out[dst + theirs + ".weight"] = s[f"{src}{ours}/scale"]
                out[dst + theirs + ".bias"] = s[f"{src}{ours}/bias"]
            qkv = np.asarray(s[src + "attn/qkv/kernel"]).T.reshape(3, h, dh, -1)
            out[dst + "attention.query_key_value.weight"] = qkv.transpose(1, 0, 2, 3).reshape(3 * h * dh, -1)
            if cfg.qkv_bias:
                b = np.asarray(s[src + "attn/qkv/bias"]).reshape(3, h, dh)
                out[dst + "attention.query_key_value.bias"] = b.transpose(1, 0, 2).reshape(-1)
            for ours, theirs, bias in (
                ("attn/proj", "attention.dense", cfg.proj_bias),
                ("fc", "mlp.dense_h_to_4h", True),
                ("out", "mlp.dense_4h_to_h", True),
            ):
                out[f"{dst}{theirs}.weight"] = _t(s[f"{src}{ours}/kernel"])
                if bias:
                    out[f"{dst}{theirs}.bias"] = s[f"{src}{ours}/bias"]
        out[p + "final_layer_norm.weight"], out[p + "final_layer_norm.bias"] = s["ln_f/scale"], s["ln_f/bias"]
        return out
    h, kv, dh, f = cfg.n_head, cfg.kv_heads, cfg.dh, cfg.ff
    out = {p + "embed_tokens.weight": s["wte/embedding"], p + "norm.weight": s["ln_f/scale"]}
    for i in range(cfg.n_layer):
        src, dst = f"blocks/{i}/", f"{p}layers.{i}."
        out[dst + "input_layernorm.weight"] = s[src + "ln_1/scale"]
        out[dst + "post_attention_layernorm.weight"] = s[src + "ln_2/scale"]
        cuts = [h * dh, (h + kv) * dh]
        for x, k in zip("qkv", np.split(np.asarray(s[src + "attn/qkv/kernel"]), cuts, axis=1)):
            out[f"{dst}self_attn.{x}_proj.weight"] = k.T
        if cfg.qkv_bias:
            for x, b in zip("qkv", np.split(np.asarray(s[src + "attn/qkv/bias"]), cuts)):
                out[f"{dst}self_attn.{x}_proj.bias"] = b
        out[dst + "self_attn.o_proj.weight"] = _t(s[src + "attn/proj/kernel"])
        if cfg.proj_bias:
            out[dst + "self_attn.o_proj.bias"] = s[src + "attn/proj/bias"]
        gate, up = np.split(np.asarray(s[src + "fc/kernel"]), [f], axis=1)
        out[dst + "mlp.gate_proj.weight"], out[dst + "mlp.up_proj.weight"] = gate.T, up.T
        out[dst + "mlp.down_proj.weight"] = _t(s[src + "out/kernel"])
    return out
