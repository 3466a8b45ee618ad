"""Best-of-n: the unbiased order-statistic estimator, its KL, and pools of samples scored by gold and proxies."""
