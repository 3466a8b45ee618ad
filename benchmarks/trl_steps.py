"""Benchmark against TRL itself (issue 35): one DPO step and one GRPO step, ours vs TRL 1.x on the same model
size in PyTorch. Not one of `python -m benchmarks`' modules: TRL is not a dependency; run it where TRL is
importable (e.g. PYTHONPATH=.:/path/to/a/venv/with/trl/site-packages python -m benchmarks.trl_steps).

DPO: B = 64 comparisons per step, policy 2x64h4 (the tiny preset's), prompt 8 + response 14 tokens, vocabulary
21. Ours: `direct.train.make_direct(...).step` (sequence log-probs of both sides, the DPO loss, Adam with
global-norm clipping; reference log-probs precomputed once, as `train_direct` does). TRL: `DPOTrainer` with
`precompute_ref_log_probs=True` (the same work per step), a word-level tokenizer over the same 21 tokens.
GRPO: 64 completions per step (8 prompts x 8), one gradient step per generation batch (TRL's default
num_iterations=1; ours epochs=1, minibatches=1), beta 0.04 (k3 KL to the reference in the loss), reward a
2x64h4 scalar-head model (ours: the proxy RM at the last token; TRL: GPT2ForSequenceClassification).
Timing: steps per second over the steps after the first two (TRL: a callback at each step's end; ours:
median of calls of 4 steps), both measured in one process, ours then the peer; the ratio is ours / TRL.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.common import MAX_NEW, MIDDLE_PROXY, PROMPT_LEN, TINY_POLICY, VOCAB

B, STEPS = 64, 12


def _texts(tokens):
    return [" ".join(f"<{int(t)}>" for t in row) for row in tokens]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from core.tokens import BOS, EOS, PAD

    tok = Tokenizer(models.WordLevel(vocab={f"<{i}>": i for i in range(VOCAB)}, unk_token=f"<{PAD}>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=f"<{PAD}>", eos_token=f"<{EOS}>", bos_token=f"<{BOS}>", padding_side="left"
    )


class _Clock:
    def __init__(self):
        from transformers import TrainerCallback

        times = self.times = []

        class CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                times.append(time.perf_counter())

        self.callback = CB()

    def steps_per_s(self):
        dt = np.diff(self.times[2:])
        return 1.0 / statistics.median(dt)


def ours_dpo():
    from direct.config import DirectConfig
    from direct.train import make_direct
    from lm import model as gpt

    pre = gpt.init(common.model_config(TINY_POLICY), 0)
    cfg = DirectConfig(batch_size=B, max_new=MAX_NEW, lr=1e-5)
    rng = np.random.default_rng(0)
    p = common.prompts(B, rng)
    ta, ma = common.responses(p, rng)
    tb, mb = common.responses(p, rng)
    fns = make_direct(pre[0], None, None, cfg.static(), PROMPT_LEN)
    batch = (ta, ma, tb, mb, np.ones(B, np.int32), fns.ref(pre[1], ta, ma), fns.ref(pre[1], tb, mb))
    batch = tuple(jnp.asarray(x) for x in batch)
    h = cfg.hyper(0.1)
    state = [jax.tree.map(lambda x: x[0], fns.init_grid(pre[1], jax.tree.map(lambda x: x[None], h)))]

    def call():
        for _ in range(4):
            state[0], m = fns.step(state[0], h, batch)
        jax.block_until_ready(m)

    [sec] = common.median_seconds(call, repeat=5)
    return 4 / sec, gpt.param_count(common.model_config(TINY_POLICY), lm_head=True)


def trl_dpo(n_params, tmp):
    from datasets import Dataset
    from transformers import GPT2LMHeadModel
    from trl import DPOConfig, DPOTrainer

    common.torch_setup()
    model = GPT2LMHeadModel(common.gpt2_config(TINY_POLICY))
    common.check_same_size(n_params, model)
    rng = np.random.default_rng(0)
    p = common.prompts(B * STEPS, rng)
    full_a, _ = common.responses(p, rng)
    full_b, _ = common.responses(p, rng)
    ds = Dataset.from_dict(
        {"prompt": _texts(p), "chosen": _texts(full_a[:, PROMPT_LEN:]), "rejected": _texts(full_b[:, PROMPT_LEN:])}
    )
    args = DPOConfig(
        output_dir=tmp, per_device_train_batch_size=B, max_steps=STEPS, learning_rate=1e-5, beta=0.1,
        precompute_ref_log_probs=True, report_to=[], use_cpu=True, bf16=False, logging_steps=1000,
        save_strategy="no", dataloader_num_workers=0, max_grad_norm=1.0,
    )  # fmt: skip
    clock = _Clock()
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=ds, processing_class=_tokenizer(), callbacks=[clock.callback]
    )
    trainer.train()
    return clock.steps_per_s()


def ours_grpo():
    from benchmarks.bench_ppo import zero_gold
    from lm import model as gpt
    from proxy_rm.train import ProxyReward
    from rl.grpo import init_policies, make_grpo
    from rl.grpo_config import GRPOConfig
    from rl.ppo import Scorer

    cfg = GRPOConfig(batch_size=B, group_size=8, max_new=MAX_NEW, epochs=1, minibatches=1, eval_every=4, updates=4)
    pre = gpt.init(common.model_config(TINY_POLICY), 0)
    rm = gpt.init(common.model_config(MIDDLE_PROXY), 1, lm_head=False, scalar_head=True)
    reward = Scorer(ProxyReward(rm[0], PROMPT_LEN, "last"), (jax.tree.map(lambda x: x[None], rm[1]), jnp.zeros(1)))
    pg, stacked = init_policies(pre[0], pre[1], [0])
    fns = make_grpo(pg, pre[0], reward.fn, zero_gold, cfg.static(), PROMPT_LEN)
    bank = jnp.asarray(common.prompts(256, np.random.default_rng(2)))
    h = cfg.hyper(0.04)
    runner = [fns.init(jax.tree.map(lambda x: x[0], stacked), h, jnp.int32(0))]

    def call():
        runner[0], m = fns.chunk(runner[0], h, pre[1], bank, reward.params, ())
        jax.block_until_ready(m)

    [sec] = common.median_seconds(call, repeat=3)
    return cfg.eval_every / sec


def trl_grpo(tmp):
    from datasets import Dataset
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel
    from trl import GRPOConfig, GRPOTrainer

    common.torch_setup()
    tok = _tokenizer()
    init = f"{tmp}/grpo_init"  # TRL builds the reference model from the policy's path
    GPT2LMHeadModel(common.gpt2_config(TINY_POLICY)).save_pretrained(init)
    tok.save_pretrained(init)
    rm_cfg = common.gpt2_config(MIDDLE_PROXY)
    rm_cfg.num_labels = 1
    rm = GPT2ForSequenceClassification(rm_cfg)
    prompts = _texts(common.prompts(B, np.random.default_rng(2)))
    ds = Dataset.from_dict({"prompt": prompts})
    args = GRPOConfig(
        output_dir=tmp, per_device_train_batch_size=B, num_generations=8, max_completion_length=MAX_NEW,
        max_steps=STEPS, learning_rate=1e-5, beta=0.04, report_to=[], use_cpu=True, bf16=False,
        logging_steps=1000, save_strategy="no", temperature=1.0,
    )  # fmt: skip
    clock = _Clock()
    trainer = GRPOTrainer(
        model=init, reward_funcs=[rm], args=args, train_dataset=ds, processing_class=tok,
        reward_processing_classes=[tok], callbacks=[clock.callback],
    )  # fmt: skip
    trainer.train()
    return clock.steps_per_s()


def main(which=("dpo", "grpo")) -> None:
    import tempfile

    print(f"load at start {common.loadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if "dpo" in which:
            ours, n = ours_dpo()
            peer = trl_dpo(n, tmp)
            print(f"| DPO step {TINY_POLICY.label()} B={B} | {ours:.4g} | {peer:.4g} | steps/s | {ours / peer:.3g} |")
        if "grpo" not in which:
            return
        ours = ours_grpo()
        peer = trl_grpo(tmp)
        print(
            f"| GRPO step {TINY_POLICY.label()} B={B} (8 x 8) | {ours:.4g} | {peer:.4g} | steps/s | {ours / peer:.3g} |"
        )
    print(f"load at end {common.loadavg()}", flush=True)


if __name__ == "__main__":
    import sys

    main(tuple(sys.argv[1:]) or ("dpo", "grpo"))
