"""Language-model engine: the GPT family, the KV-cache sampler and pretraining on a corpus."""
