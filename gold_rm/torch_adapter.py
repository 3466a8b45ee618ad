"""Use a PyTorch reward model as the gold scorer on this project's token arrays.

Any module with `forward(input_ids, attention_mask) -> logits [B, 1]` works (e.g. a Hugging Face
`*ForSequenceClassification`). torch is an optional extra, so it is imported inside methods only.
"""

from __future__ import annotations

import numpy as np

from core.errors import UsageError


class TorchGoldRM:
    """Gold scorer backed by a torch reward model.

    Arguments:
      model: torch module; called as model(input_ids=..., attention_mask=...) under no_grad, in eval mode.
      prompt_len: P of the token arrays (sequence = P prompt tokens then the masked response).
      token_map: our token id -> model token id: an int array indexed by our ids, a dict, a callable on
        int arrays, or None (identity).
      pad_id: model token id written after each sequence's end. Default: model.config.pad_token_id. If
        neither is set, rows are run one at a time without padding (exact for any model, but slow).
        A Hugging Face model reads its score at the last token that is not `pad_id`, so no real token may
        map to `pad_id` when padding is used.
      batch_size: rows per forward call; device: torch device (default: the model's); logit_index: which
        output logit is the reward.
    """

    def __init__(
        self,
        model,
        *,
        prompt_len: int,
        token_map=None,
        pad_id: int | None = None,
        batch_size: int = 64,
        device=None,
        logit_index: int = 0,
    ):
        if batch_size < 1:
            raise UsageError(f"batch_size must be positive, got {batch_size}")
        if prompt_len < 1:
            raise UsageError(f"prompt_len must be positive, got {prompt_len}")
        self.model, self.prompt_len = model, prompt_len
        self.batch_size, self.logit_index = batch_size, logit_index
        if pad_id is None:
            pad_id = getattr(getattr(model, "config", None), "pad_token_id", None)
        self.pad_id = pad_id
        self.token_map = token_map
        self.device = device

    def map_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Our token ids -> the model's (int64, same shape)."""
        tokens = np.asarray(tokens, np.int64)
        m = self.token_map
        if m is None:
            return tokens
        if callable(m):
            return np.asarray(m(tokens), np.int64)
        if isinstance(m, dict):
            try:
                return np.vectorize(lambda t: m[int(t)], otypes=[np.int64])(tokens)
            except KeyError as e:
                raise UsageError(f"token {e.args[0]} has no entry in token_map") from None
        table = np.asarray(m, np.int64)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= table.shape[0]):
            raise UsageError(f"token ids outside the token_map table of size {table.shape[0]}")
        return table[tokens]

    def score(self, tokens, response_mask) -> np.ndarray:
        """Reward of each sequence (prompt plus its masked response). Returns float32[B]."""
        import torch  # the optional extra `torch`

        tokens = np.asarray(tokens)
        mask = np.asarray(response_mask, bool)
        P = self.prompt_len
        if tokens.ndim != 2 or mask.ndim != 2 or tokens.shape != (mask.shape[0], P + mask.shape[1]):
            raise UsageError(f"tokens {tokens.shape} and mask {mask.shape} do not fit prompt_len={P}")
        ids = self.map_tokens(tokens)
        # a response is its prefix up to the first masked-out position
        lengths = self.prompt_len + np.argmin(np.concatenate([mask, np.zeros_like(mask[:, :1])], 1), axis=1)
        device = self.device or next(self.model.parameters()).device
        out = np.empty(tokens.shape[0], np.float32)
        self.model.eval()
        with torch.no_grad():
            # without a pad id a Hugging Face model cannot find each row's last token in a batch
            step = self.batch_size if self.pad_id is not None else 1
            for i in range(0, tokens.shape[0], step):
                sel = slice(i, i + step)
                out[sel] = self._forward(torch, ids[sel], lengths[sel], device)
        return out

    def components(self, tokens, response_mask) -> dict:
        """{"score": float32[B]}: the interface `gold_rm.labels.make_comparisons` expects."""
        return {"score": self.score(tokens, response_mask)}

    def terms(self, tokens, response_mask) -> dict:
        """{"score": float32[B]}: a torch reward model's only term is its score (`gold_rm.interface.Gold`)."""
        return self.components(tokens, response_mask)

    def _forward(self, torch, ids: np.ndarray, lengths: np.ndarray, device) -> np.ndarray:
        width = int(lengths.max())
        valid = np.arange(width)[None, :] < lengths[:, None]
        pad = 0 if self.pad_id is None else self.pad_id
        ids = np.where(valid, ids[:, :width], pad)
        out = self.model(
            input_ids=torch.as_tensor(ids, dtype=torch.long, device=device),
            attention_mask=torch.as_tensor(valid, dtype=torch.long, device=device),
        )
        logits = getattr(out, "logits", out[0] if isinstance(out, (tuple, list)) else out)
        return logits[:, self.logit_index].float().cpu().numpy()
