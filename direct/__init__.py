"""Direct alignment from preferences (issue 35): DPO, IPO and SLiC trained offline on the study's
gold-labelled comparisons, with no reward model in the loop (Rafailov et al. 2024, arXiv 2406.02900, for the
over-optimization question). `losses` holds the pairwise losses, `config` the settings, `train` the jitted
programs (a grid of (beta, seed) points vmapped in one compile), the training loop and the points rows.
An optimizer package beside `rl/` (same layer: neither imports the other); it builds on `lm/` only."""
