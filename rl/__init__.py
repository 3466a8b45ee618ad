"""RL against a proxy: PPO (config, compiled program, runner), GAE, KL estimators, diversity metrics."""
