"""The text world: prompts from a file, tokenized by the policy checkpoint's own tokenizer, left-padded for
generation; responses decoded back to text.

Prompts file (`read_prompts`):
- a text file (any suffix but .parquet, .jsonl, .json): one prompt a line; blank lines are skipped;
  escape nothing (a prompt is the line as written, without its newline);
- a Parquet or JSON lines table: the prompts are one column, `column` (default: "prompt", else the only
  column of strings).

`TextWorld.build` tokenizes them with the checkpoint's tokenizer (its special tokens added as it adds them,
e.g. a Llama BOS), keeps at most `max_prompt_tokens` of each (the last ones: the end of a prompt is what the
response continues), and left-pads them (`lm.hf.tokenizer.left_padded`): the sampler never attends to the
padding and counts positions from each prompt's first token, as transformers' generate does. EOS and PAD
are the tokenizer's (`lm.hf.tokenizer.special_ids`).
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import UsageError, cut
from core.safe_read import MAX_LOG, read_bytes
from lm.hf.tokenizer import Prompts, decode, encode, left_padded, load_tokenizer, response_ids, special_ids

TABLE_SUFFIXES = (".parquet", ".jsonl", ".json")


def read_prompts(path, column: str | None = None) -> list[str]:
    """The prompts of a file (see the module docstring); a bad file is a UsageError."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--prompts {path}: no such file")
    raw = read_bytes(path, MAX_LOG)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        if column is not None:
            raise UsageError(f"--prompts {path}: a column ({column}) names a column of a .parquet or .jsonl table")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"--prompts {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        prompts = [line for line in text.splitlines() if line.strip()]
    else:
        prompts = _column(_table(path, raw, suffix), column, path)
    if not prompts:
        raise UsageError(f"--prompts {path}: no prompts")
    return prompts


def _table(path: Path, raw: bytes, suffix: str) -> pd.DataFrame:
    try:
        if suffix == ".parquet":
            return pd.read_parquet(io.BytesIO(raw))
        return pd.read_json(io.BytesIO(raw), lines=suffix == ".jsonl")
    except (ValueError, OSError, json.JSONDecodeError) as e:
        raise UsageError(f"--prompts {path}: cannot read the table: {cut(str(e), 200)}") from None


def _column(df: pd.DataFrame, column: str | None, path: Path) -> list[str]:
    names = [str(c) for c in df.columns]
    if column is None:
        texts = [c for c in names if df[c].map(lambda v: isinstance(v, str)).all()]
        column = "prompt" if "prompt" in names else (texts[0] if len(texts) == 1 else None)
        if column is None:
            found = cut(", ".join(names), 200)
            raise UsageError(f"--prompts {path}: no 'prompt' column; name one with --prompt-column ({found})")
    if column not in names:
        raise UsageError(f"--prompts {path}: no column {column!r} ({cut(', '.join(names), 200)})")
    values = df[column].tolist()
    bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if bad:
        raise UsageError(f"--prompts {path}: column {column!r} row {bad[0] + 1} is not a non-empty string")
    return values


@dataclasses.dataclass(frozen=True)
class TextWorld:
    """Prompt texts, the policy's tokenizer with its EOS and PAD ids, the left-padded prompt ids."""

    texts: tuple
    tokenizer: object
    eos_id: int
    pad_id: int
    prompts: Prompts

    @classmethod
    def build(cls, checkpoint, texts, max_prompt_tokens: int, hf_config: dict | None = None) -> TextWorld:
        """Tokenize `texts` with the tokenizer saved in `checkpoint` (see the module docstring)."""
        tokenizer = load_tokenizer(checkpoint)
        eos, pad = special_ids(tokenizer, hf_config)
        prompts = left_padded(encode(tokenizer, texts), pad, max_prompt_tokens, where=f"prompts ({checkpoint})")
        return cls(tuple(texts), tokenizer, eos, pad, prompts)

    @property
    def prompt_len(self) -> int:
        return self.prompts.length

    def prompt_texts(self, rows) -> list[str]:
        """The text of each sampled row's prompt as the policy saw it (decoded from its kept tokens)."""
        p = self.prompts
        kept = [p.ids[i, p.offsets[i] :].tolist() for i in np.asarray(rows)]
        return decode(self.tokenizer, kept)

    def sequence_texts(self, tokens, mask) -> list[str]:
        """prompt text ++ response text of sampled rows (what a reward model of any tokenizer scores)."""
        prompts = decode(self.tokenizer, np.asarray(tokens)[:, : self.prompt_len].tolist())  # padding is special
        return [p + r for p, r in zip(prompts, self.response_texts(tokens, mask), strict=True)]

    def response_texts(self, tokens, mask) -> list[str]:
        """Decoded responses of sampled rows (tokens int[B, P+T], mask bool[B, T]; EOS and specials dropped)."""
        tokens = np.asarray(tokens)[:, self.prompt_len :]
        return decode(self.tokenizer, response_ids(tokens, mask, self.eos_id))
