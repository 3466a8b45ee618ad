"""Tiny random Hugging Face checkpoints built in-process and saved with `save_pretrained` (nothing is
downloaded): a byte-level BPE tokenizer trained on a fixed little corpus, and GPT-2, GPT-NeoX (Pythia) and
Llama / Qwen2 models of a few thousand parameters around it, as causal LMs or one-label reward models.

They exist to test the text world's plumbing (tests/test_text_world.py, the `text-tiny` study preset) in
seconds on a CPU; they say nothing about real models. Deterministic: the same arguments write the same
weights (torch's generator seeded per model) and the same tokenizer.
"""

from __future__ import annotations

from pathlib import Path

from lm.hf.tokenizer import transformers_module

EOS_TEXT = "<|endoftext|>"
VOCAB = 320
CORPUS = (
    "the quick brown fox jumps over the lazy dog",
    "a reward model scores the text it reads",
    "best of n sampling keeps the response the proxy likes best",
    "the gold model is the one we trust; the proxy is what we optimise",
    "please write a short and helpful answer to the question",
    "how do you make a cup of tea? boil water, add the leaves, wait.",
)
FAMILIES = ("gpt2", "neox", "llama", "qwen2")


def tokenizer(path) -> Path:
    """Train the tiny byte-level BPE tokenizer and save it (with EOS = BOS = "<|endoftext|>", no pad token,
    as GPT-2's and Pythia's) into `path`. Returns path."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # with transformers (the extra)

    transformers = transformers_module()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=[EOS_TEXT], initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(list(CORPUS) * 4, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TEXT, bos_token=EOS_TEXT)
    Path(path).mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(path))
    return Path(path)


def config(family: str, *, width: int = 32, layers: int = 2, heads: int = 4, n_ctx: int = 128, reward=False):
    """A transformers config of the family at this size, the tiny tokenizer's vocabulary and EOS."""
    T = transformers_module()
    ids = {"eos_token_id": 0, "bos_token_id": 0, "vocab_size": VOCAB}
    if reward:
        ids["num_labels"] = 1
    if family == "gpt2":
        return T.GPT2Config(n_positions=n_ctx, n_embd=width, n_layer=layers, n_head=heads, **ids)
    common = {
        "hidden_size": width,
        "intermediate_size": 2 * width,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": n_ctx,
        **ids,
    }
    if family == "neox":  # rotary on a quarter of each head: heads of 8 dimensions at least
        return T.GPTNeoXConfig(**{**common, "num_attention_heads": max(1, min(heads, width // 8))})
    if family == "llama":
        return T.LlamaConfig(num_key_value_heads=max(1, heads // 2), tie_word_embeddings=False, **common)
    if family == "qwen2":
        return T.Qwen2Config(num_key_value_heads=1, tie_word_embeddings=True, **common)
    raise ValueError(f"tiny family {family!r}; choose from {', '.join(FAMILIES)}")


def model(path, family: str, *, reward: bool = False, seed: int = 0, tokenizer_from=None, **sizes) -> Path:
    """Save a tiny random model (causal LM, or one-label sequence classifier with `reward`) and the tiny
    tokenizer (copied from `tokenizer_from`, else trained) into `path`. Returns path."""
    import torch  # the optional extra `torch`

    T = transformers_module()
    cfg = config(family, reward=reward, **sizes)
    torch.manual_seed(seed)
    auto = T.AutoModelForSequenceClassification if reward else T.AutoModelForCausalLM
    net = auto.from_config(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # move every parameter off its init (zero biases, unit norms), reproducibly
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    path = Path(path)
    net.save_pretrained(str(path))
    if tokenizer_from is None:
        tokenizer(path)
    else:
        T.AutoTokenizer.from_pretrained(str(tokenizer_from), local_files_only=True).save_pretrained(str(path))
    return path
