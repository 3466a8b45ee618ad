"""Readers of foreign runs: points files and run directories, trainer logs (Hugging Face, TRL, OpenRLHF,
lm-human-preferences; TensorBoard events; W&B exports), best-of-n sample tables, and the input specs of
`overopt fit` and `overopt bon`. Each returns a points table that `scaling.points` validates."""
