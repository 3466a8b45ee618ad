"""overopt engine: transformer family, sampling, KL, best-of-n, PPO, laws, run store, study, CLI."""

__version__ = "0.1.0"
