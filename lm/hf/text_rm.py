"""Reward models that score text: a Hugging Face checkpoint imported into JAX (`JaxTextRM`, reference
`hf:PATH`) or run by PyTorch (`TorchTextRM`, reference `torch:PATH`), each with its own tokenizer.

A sequence (prompt text ++ response text, as the policy's tokenizer decoded them) is tokenized by the reward
model's tokenizer (its special tokens added as it adds them), cut on the left to the model's context, and
scored as transformers' `*ForSequenceClassification` scores a right-padded batch: the scalar head at the
rightmost token that is not the pad token (PAD: the config's pad_token_id, which transformers pools by, else
the tokenizer's pad token, else its EOS). Both backends
apply that one rule, so the same checkpoint scores alike through either (tests/test_text_world.py).

Both record their cost (`seconds`, `rows`): the torch gold runs outside every compiled program, on the
rows it is asked to score only, and the verb reports what it took.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from core.errors import UsageError, cut
from lm.arch import param_count
from lm.hf.convert import load
from lm.hf.files import read_config
from lm.hf.tokenizer import encode, load_tokenizer, special_ids, transformers_module

WIDTH_STEP = 32  # batches are padded to a multiple of this width: few compiled shapes


def _rightmost_scores(graphdef, state, tokens, pad_id):
    model = nnx.merge(graphdef, state)
    h, _ = model.trunk(tokens)
    values = model.scalar(h)
    last = jnp.argmax(jnp.arange(tokens.shape[1]) * (tokens != pad_id), axis=1)
    return jnp.take_along_axis(values, last[:, None], axis=1)[:, 0]


_rightmost_scores_jit = jax.jit(_rightmost_scores)


def batches(token_lists, n_ctx: int, pad_id: int, batch_size: int, step: int = WIDTH_STEP):
    """Yield (row indices, ids int[batch_size, W], lengths int[batch_size]) over rows sorted by length:
    right-padded with pad_id,
    each row cut on the left to n_ctx tokens, W a multiple of `step` (at most n_ctx); short batches are
    filled with copies of their first row (their scores are dropped)."""
    lists = [t[-n_ctx:] for t in token_lists]
    order = np.argsort([len(t) for t in lists], kind="stable")
    for lo in range(0, len(order), batch_size):
        rows = order[lo : lo + batch_size]
        width = min(n_ctx, -(-max(len(lists[i]) for i in rows) // step) * step)
        ids = np.full((batch_size, width), pad_id, np.int64)
        lengths = np.full(batch_size, len(lists[rows[0]]), np.int64)
        for j, i in enumerate(rows):
            ids[j, : len(lists[i])] = lists[i]
            lengths[j] = len(lists[i])
        ids[len(rows) :] = ids[0]
        yield rows, ids, lengths


def pool_pad_id(tokenizer, hf_config: dict) -> int:
    """The pad id a reward model pools by: its config's pad_token_id, else the tokenizer's PAD (else EOS)."""
    pad = hf_config.get("pad_token_id")
    return special_ids(tokenizer, hf_config)[1] if pad is None else int(pad)


class TextRM:
    """What both backends share: the tokenizer, the pad rule, the cost counters, `score_texts`."""

    ref: str
    n_params: int  # parameters of the reward model (the points' rm_params)
    tokenizer: object
    pad_id: int
    n_ctx: int
    batch_size: int

    def __init__(self):
        self.seconds, self.rows = 0.0, 0

    def token_lists(self, texts) -> list[list[int]]:
        lists = encode(self.tokenizer, texts)
        empty = [i for i, t in enumerate(lists) if not t]
        if empty:
            raise UsageError(f"{self.ref}: text {empty[0] + 1} has no tokens under this model's tokenizer")
        return lists

    def score_texts(self, texts) -> np.ndarray:
        """float32[B]: the reward of each text (see the module docstring)."""
        start = time.perf_counter()
        out = np.empty(len(texts), np.float32)
        for rows, ids, lengths in batches(self.token_lists(texts), self.n_ctx, self.pad_id, self.batch_size):
            out[rows] = self._scores(ids, lengths)[: len(rows)]
        self.seconds += time.perf_counter() - start
        self.rows += len(texts)
        return out

    def cost(self) -> dict:
        return {"ref": self.ref, "rows": self.rows, "seconds": self.seconds}


class JaxTextRM(TextRM):
    """`hf:PATH`: the checkpoint imported as a reward model (its one-label `score` head; an LM checkpoint
    gets a new scalar head from `seed`), run by the compiled JAX trunk."""

    def __init__(self, path, *, batch_size: int = 32, seed: int = 0, compute_dtype: str = "float32"):
        super().__init__()
        self.ref, self.batch_size = f"hf:{path}", int(batch_size)
        self.imported = load(path, role="reward", seed=seed, compute_dtype=compute_dtype)
        self.tokenizer = load_tokenizer(path)
        self.pad_id = pool_pad_id(self.tokenizer, self.imported.hf_config)
        self.n_ctx = self.imported.cfg.n_ctx
        self.n_params = param_count(self.imported.cfg, lm_head=False, scalar_head=True)

    def _scores(self, ids, lengths):
        tokens = jnp.asarray(ids, jnp.int32)
        return np.asarray(_rightmost_scores_jit(self.imported.graphdef, self.imported.state, tokens, self.pad_id))


class TorchTextRM(TextRM):
    """`torch:PATH`: a one-label `*ForSequenceClassification` checkpoint run by PyTorch (CPU unless `device`),
    under no_grad, in eval mode, batched."""

    def __init__(self, path, *, batch_size: int = 32, device: str = "cpu"):
        super().__init__()
        self.ref, self.batch_size, self.device = f"torch:{path}", int(batch_size), device
        hf = read_config(path)
        if not any(str(a).endswith("ForSequenceClassification") for a in hf.get("architectures") or ()):
            raise UsageError(f"{path}: not a *ForSequenceClassification checkpoint (architectures in config.json)")
        if int(hf.get("num_labels", len(hf.get("id2label") or {0: 0}))) != 1:
            raise UsageError(f"{path}: a reward model has one label")
        transformers = transformers_module()
        import torch  # the optional extra `torch`

        self.torch = torch
        try:
            model = transformers.AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise UsageError(f"cannot load {path} with transformers: {cut(str(e), 200)}") from None
        self.model = model.to(device).eval()
        self.tokenizer = load_tokenizer(path)
        self.pad_id = pool_pad_id(self.tokenizer, hf)
        self.model.config.pad_token_id = self.pad_id  # the pooling rule of the module docstring
        self.n_ctx = int(hf.get("n_positions") or hf.get("max_position_embeddings") or 1 << 30)
        self.n_params = int(sum(p.numel() for p in self.model.parameters()))

    def _scores(self, ids, lengths):
        torch = self.torch
        mask = np.arange(ids.shape[1])[None, :] < lengths[:, None]  # right padding: the scored positions never see it
        with torch.no_grad():
            t = torch.as_tensor(ids, dtype=torch.long, device=self.device)
            m = torch.as_tensor(mask, dtype=torch.long, device=self.device)
            logits = self.model(input_ids=t, attention_mask=m).logits
        return logits[:, 0].float().cpu().numpy()


def parse_ref(ref: str, *, allowed=("hf", "torch"), what: str = "model") -> tuple[str, Path]:
    """(scheme, directory) of a reference `hf:PATH` or `torch:PATH`; a bad one is a UsageError."""
    scheme, sep, path = str(ref).partition(":")
    if not sep or scheme not in allowed or not path:
        forms = " or ".join(f"{s}:PATH" for s in allowed)
        raise UsageError(f"{what} {cut(str(ref), 100)!r}: give {forms} (a local checkpoint directory)")
    if not Path(path).is_dir():
        raise UsageError(f"{what} {ref}: {path} is not a directory")
    return scheme, Path(path)


def text_rm(
    ref: str, *, what: str = "reward model", batch_size: int = 32, seed: int = 0, device="cpu", compute_dtype="float32"
) -> TextRM:
    """The reward model a reference names: `hf:PATH` (JAX, its dense layers in `compute_dtype`) or `torch:PATH`
    (PyTorch, on `device`)."""
    scheme, path = parse_ref(ref, what=what)
    if scheme == "hf":
        return JaxTextRM(path, batch_size=batch_size, seed=seed, compute_dtype=compute_dtype)
    return TorchTextRM(path, batch_size=batch_size, device=device)
