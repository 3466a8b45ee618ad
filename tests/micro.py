"""The micro study: the tiny-flattery preset (the first `tiny`) shrunk to seconds (two proxy sizes, a data-size
point, an ensemble of two, PPO against one proxy on a 2 x 3 grid). `conftest.micro_study` builds it once for the
session."""

from __future__ import annotations

MICRO = [
    "policy.n_layer=1",
    "policy.d_model=32",
    "policy.corpus_size=2000",
    "policy.pretrain.steps=60",
    "labels.n_comparisons=800",
    "labels.n_init_samples=256",
    'ladder.sizes=[{"name":"rm-a","n_layer":1,"d_model":8,"n_head":2},{"name":"rm-b","n_layer":1,"d_model":16,"n_head":2}]',
    "ladder.ensemble_size=2",
    "ladder.data_sizes=[300]",
    "bon.n_prompts=4",
    "bon.pool_size=64",
    "rl.ppo.updates=6",
    "rl.ppo.eval_every=2",
    "rl.ppo.epochs=1",
    "rl.ppo.minibatches=1",
    "rl.ppo.fast_compile=true",
    "rl.ppo.batch_size=16",
    "rl.ppo.eval_batch=32",
    "rl.kl_coefs=[0.0,0.1]",
    "rl.proxies=['rm-b']",
]
PPO_UPDATES = 6  # rl.ppo.updates above: the last checkpoint of a finished RL run


def study_argv(out, *extra) -> list[str]:
    """`overopt study` argv for the micro study in `out` (extra arguments appended)."""
    args = ["study", "--preset", "tiny-flattery", "--out", str(out), "--no-progress"]
    for o in MICRO:
        args += ["--set", o]
    return args + [str(e) for e in extra]


def copy_study(src, dst):
    """A private copy of a shared study directory (for a test that resumes, damages or writes to it);
    file times are kept, so a test can tell whether a run was redone."""
    import shutil

    shutil.copytree(src, dst, symlinks=True)
    return dst
