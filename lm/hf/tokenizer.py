"""A checkpoint's own tokenizer: loading it, its EOS and PAD, left-padded prompts for generation, decoding.

The tokenizer is read from the checkpoint directory by `transformers.AutoTokenizer` (local files only:
nothing is downloaded). transformers is the optional extra `torch`, imported here lazily: without it,
the text path stops with one line saying how to install it.

EOS and PAD are the tokenizer's: `eos_token_id` (else the config's), and `pad_token_id`, else EOS (the
usual convention of GPT-2 and Pythia tokenizers, which have no pad token). `with_token_ids` puts them
into an imported model's `ModelConfig`, which the sampler (`lm.sampling`) and the response log-probs
read: EOS ends a response, PAD fills the positions after it; nothing is forbidden.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from core.errors import UsageError, cut
from lm.model import abstract

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
INSTALL = "the text world needs transformers (the optional extra: pip install 'overopt[torch]')"


def transformers_module():
    """transformers, or a UsageError naming the extra to install."""
    try:
        import transformers  # the optional extra `torch`: only the text world needs it
    except ImportError:
        raise UsageError(INSTALL) from None
    # a command's stderr is its progress and its one-line errors: no loading bars, no advice on padding
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    return transformers


def load_tokenizer(path):
    """The tokenizer saved in checkpoint directory `path` (local files only)."""
    path = Path(path)
    if not path.is_dir():
        raise UsageError(f"Hugging Face checkpoint {str(path)!r} is not a directory")
    if not any((path / name).exists() for name in TOKENIZER_FILES):
        raise UsageError(f"{path} has no tokenizer ({', '.join(TOKENIZER_FILES)}): save it with the model")
    transformers = transformers_module()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UsageError(f"cannot load the tokenizer of {path}: {cut(str(e), 200)}") from None


def special_ids(tokenizer, hf_config: dict | None = None) -> tuple[int, int]:
    """(eos_id, pad_id) as the tokenizer defines them: its EOS (else the config's; -1: none) and its PAD
    (else EOS; with neither, 0, which only fills positions no row attends to)."""
    eos = tokenizer.eos_token_id
    if eos is None and hf_config is not None:
        eos = hf_config.get("eos_token_id")
        eos = eos[0] if isinstance(eos, list) and eos else eos
    eos = -1 if eos is None else int(eos)
    pad = tokenizer.pad_token_id
    pad = (eos if eos >= 0 else 0) if pad is None else int(pad)
    return eos, pad


def with_token_ids(imported, eos_id: int, pad_id: int, *, lm_head=True, scalar_head=False):
    """(graphdef, cfg) of an imported model whose config uses the tokenizer's EOS and PAD, nothing forbidden;
    its state is unchanged (the ids are not weights)."""
    cfg = dataclasses.replace(imported.cfg, eos_id=int(eos_id), pad_id=int(pad_id), forbidden=())
    graphdef, _ = abstract(cfg, lm_head=lm_head, scalar_head=scalar_head)
    return graphdef, cfg


def encode(tokenizer, texts) -> list[list[int]]:
    """Token ids of each text, with the tokenizer's own special tokens (a Llama tokenizer's BOS)."""
    return [list(tokenizer(str(t), add_special_tokens=True)["input_ids"]) for t in texts]


@dataclasses.dataclass(frozen=True)
class Prompts:
    """Prompts tokenized and left-padded for generation: ids int32[N, P] (row i's last P - offsets[i]
    positions are its tokens, the first offsets[i] are PAD), offsets int32[N], truncated: how many prompts
    lost tokens on the left to fit max_tokens."""

    ids: np.ndarray
    offsets: np.ndarray
    truncated: int

    @property
    def length(self) -> int:
        return int(self.ids.shape[1])


def left_padded(token_lists, pad_id: int, max_tokens: int, where: str = "prompts") -> Prompts:
    """Left-pad token lists to their longest (at most max_tokens: longer ones keep their last tokens)."""
    if max_tokens < 1:
        raise UsageError(f"{where}: no room for a prompt token (the context is used up by the responses)")
    empty = [i for i, t in enumerate(token_lists) if not t]
    if empty:
        raise UsageError(f"{where}: prompt {empty[0] + 1} has no tokens (an empty line?)")
    kept = [t[-max_tokens:] for t in token_lists]
    width = max(len(t) for t in kept)
    ids = np.full((len(kept), width), pad_id, np.int32)
    offsets = np.empty(len(kept), np.int32)
    for i, t in enumerate(kept):
        offsets[i] = width - len(t)
        ids[i, offsets[i] :] = t
    return Prompts(ids, offsets, sum(len(a) > len(b) for a, b in zip(token_lists, kept, strict=True)))


def response_ids(tokens, mask, eos_id: int) -> list[list[int]]:
    """Each response's tokens (positions where mask is True), its final EOS left out."""
    out = []
    for row, m in zip(np.asarray(tokens), np.asarray(mask, bool), strict=True):
        ids = row[: int(m.sum())].tolist()
        if ids and ids[-1] == eos_id:
            ids = ids[:-1]
        out.append(ids)
    return out


def decode(tokenizer, token_lists) -> list[str]:
    """Text of each token list, special tokens dropped."""
    return [tokenizer.decode(t, skip_special_tokens=True) for t in token_lists]
