"""The real TRL runs trimmed into this directory: TRL 1.16.0, transformers 5.25.0, torch 2.13.0 (CPU), a tiny
random GPT-2 built from a config (no download) and a word-level tokenizer built locally; 50 steps, beta 0.04,
reward functions proxy (weight 1) and gold (weight 0), TensorBoard on. Not run in CI (it needs torch and trl):

    python make_trl_runs.py grpo 1 OUT/grpo_s1; python make_trl_runs.py grpo 2 OUT/grpo_s2
    python make_trl_runs.py rloo 1 OUT/rloo_s1

Kept here: each run's checkpoint-50/trainer_state.json with the keys the readers use (step, epoch, kl,
rewards/*/mean|std, reward, completions/mean_length, num_tokens, frac_reward_zero_std) and the model card's
first sentence (README.md: "This model was trained with GRPO.")."""

import sys

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

algo, seed, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(seed)
words = [f"w{i}" for i in range(60)]
vocab = {"<pad>": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(words)}}
tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<eos>")
hf_tok.padding_side = "left"
cfg = GPT2Config(
    vocab_size=len(vocab),
    n_positions=64,
    n_embd=32,
    n_layer=2,
    n_head=2,
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=1,
)
model = GPT2LMHeadModel(cfg)
init = out + "_init"
model.save_pretrained(init)
hf_tok.save_pretrained(init)
model = init  # TRL builds the reference model from the policy's path
prompts = [" ".join(words[(i * 7 + j) % 60] for j in range(4)) for i in range(64)]
ds = Dataset.from_dict({"prompt": prompts})


def proxy(completions, **kw):  # rewards token w3 (hackable proxy): count of w3 tokens
    return [float(c.split().count("w3")) for c in completions]


def gold(completions, **kw):  # gold likes some w3 but hates too many and likes length ~8
    out = []
    for c in completions:
        t = c.split()
        k = t.count("w3")
        out.append(0.5 * min(k, 3) - 0.15 * max(k - 3, 0) ** 1.5 - 0.02 * abs(len(t) - 8))
    return out


common = dict(
    output_dir=out,
    per_device_train_batch_size=8,
    num_generations=4,
    max_completion_length=12,
    max_steps=50,
    logging_steps=1,
    save_steps=25,
    learning_rate=3e-3,
    report_to=["tensorboard"],
    seed=seed,
    beta=0.04,
    reward_weights=[1.0, 0.0],
    use_cpu=True,
    bf16=False,
    temperature=1.0,
)
if algo == "grpo":
    from trl import GRPOConfig as C
    from trl import GRPOTrainer as T
else:
    from trl import RLOOConfig as C
    from trl import RLOOTrainer as T
args = C(**common)
trainer = T(model=model, reward_funcs=[proxy, gold], args=args, train_dataset=ds, processing_class=hf_tok)
trainer.train()
