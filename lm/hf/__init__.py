"""Hugging Face checkpoints as the project's models: import (`load`) a local checkpoint directory
(config.json with model.safetensors, a sharded index, or pytorch_model.bin) into `lm.model.GPT`, and
`export` one back (config.json + model.safetensors that transformers loads). No download, no
dependency on `transformers` (only `.bin` files need torch). Families: lm/hf/families.py.
"""

from lm.hf.convert import Imported, export, flat_state, load, sequence_scores

__all__ = ["Imported", "export", "flat_state", "load", "sequence_scores"]
