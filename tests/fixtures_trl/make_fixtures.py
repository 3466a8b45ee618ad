"""Write the trainer-log fixtures of tests/test_trainer_logs.py into this directory (or the one given).

    python tests/fixtures_trl/make_fixtures.py [OUT_DIR]

TRL is not installed in CI (it pulls torch, transformers, accelerate and datasets, and a real GRPO run
takes minutes), so these are not the output of a real run: they are small synthetic runs written with
the exact key layout and file layout of the trainers, as read in their sources (see README "Fitting your
own runs" and the sources cited below). The numbers follow known laws, so a test knows what a fit must
recover: the per-sequence KL follows a schedule, the logged per-token KL is it divided by the mean
completion length, and gold = d (alpha - beta log d) with d = sqrt(per-sequence KL), alpha 0.9, beta 0.3.

Files (deterministic: the same bytes on every run; the TensorBoard file only when `tensorboard` is
installed):
- grpo_run/: a TRL GRPOTrainer output directory (beta > 0, reward functions `proxy` with weight 1 and
  `gold` with weight 0, so `reward` is the proxy and the gold is logged as `rewards/gold/mean`): the
  model's config.json and generation_config.json, checkpoint-20/ and checkpoint-40/ (each a config.json
  and the trainer_state.json of the history up to its step: HF `TrainerState.save_to_json`, indent 2,
  sorted keys), no root trainer_state.json (only `trainer.save_state()` writes one), and
  runs/<date>_<host>/events.out.tfevents.* with HF's TensorBoardCallback names (`train/<key>`,
  `eval/<key>`; the summary's numbers at the last step too, as HF writes them). Keys per logging step:
  GRPOTrainer._metrics (trl/trainer/grpo_trainer.py@00313f21: num_tokens, completions/*,
  rewards/<name>/mean|std, reward, reward_std, frac_reward_zero_std, kl, entropy, clip_ratio/*) merged
  with Trainer.log's loss, grad_norm, learning_rate, step_time, epoch, step; eval entries with the eval_
  prefix; the final summary entry (train_runtime, ...) repeats the last step and, as TRL merges its
  metrics into every log call, carries a partial window of them. The key set of a logging step is that
  of a real TRL 1.16.0 GRPO run (a tiny random GPT-2 on CPU, checked once by hand; not run in CI).
- grpo_beta0/checkpoint-40/: the same run with beta = 0 (recent TRL's default): no `kl` key anywhere.
- grpo_log_history.jsonl: grpo_run's log_history, one entry a line (summary line included).
- wandb_kl.csv, wandb_gold.csv: W&B panel exports of two GRPO runs (x-axis `Step`; `<run> - train/kl`,
  `__MIN`/`__MAX` envelopes), one panel per file as W&B exports them.
- ppo_run/: TRL PPOTrainer (0.12-0.2x; trl/trainer/ppo_trainer.py@be8a0874) with a root trainer_state.json
  (save_state) and an older checkpoint-10/ (it must not be read too): `objective/kl` (per sequence),
  `objective/scores` (the proxy) and a user callback's `gold`.
- openrlhf.jsonl: OpenRLHF's PPO logs_dict (openrlhf/trainer/ppo_trainer.py@0082bf16): kl (per token),
  reward, response_length, policy_loss, actor_lr, ... and a gold metric.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

ALPHA, BETA = 0.9, 0.3  # the gold law of every fixture: gold = d (ALPHA - BETA log d), d = sqrt(KL per sequence)
STEPS, LOG_EVERY = 40, 2


def _noise(i: int, scale: float) -> float:
    """Deterministic small noise (no RNG: the same bytes on every platform)."""
    return scale * math.sin(12.9898 * (i + 1)) * math.cos(78.233 * (i + 1))


def gold_of(kl_seq: float, i: int) -> float:
    d = math.sqrt(kl_seq)
    return d * (ALPHA - BETA * math.log(d)) + _noise(i, 0.01)


def grpo_metrics(step: int, run: int = 0, beta: float = 0.04) -> dict:
    """One GRPO logging window ending at `step`."""
    kl_seq = 0.5 + 0.45 * step * (1 + 0.2 * run)  # nats per response
    length = 40.0 + 0.5 * step  # completions get longer
    proxy = 0.2 + 0.12 * math.sqrt(step)
    gold = gold_of(kl_seq, step + 100 * run)
    m = {
        "num_tokens": float(step * 8 * (16 + length)),
        "completions/mean_length": length,
        "completions/min_length": length - 12.0,
        "completions/max_length": length + 14.0,
        "completions/clipped_ratio": 0.0625,
        "completions/mean_terminated_length": length - 1.5,
        "completions/min_terminated_length": length - 12.0,
        "completions/max_terminated_length": length + 10.0,
        "rewards/proxy/mean": proxy,
        "rewards/proxy/std": 0.21,
        "rewards/gold/mean": gold,
        "rewards/gold/std": 0.17,
        "reward": proxy,  # weights [1.0, 0.0]: the weighted sum is the proxy
        "reward_std": 0.2,
        "frac_reward_zero_std": 0.125,
        "entropy": 2.1 - 0.01 * step,
        "clip_ratio/low_mean": 0.0,
        "clip_ratio/low_min": 0.0,
        "clip_ratio/high_mean": 0.0,
        "clip_ratio/high_max": 0.0,
        "clip_ratio/region_mean": 0.0,
    }
    if beta != 0.0:
        m["kl"] = kl_seq / length  # masked token mean: nats per token
    return {k: round(v, 10) for k, v in m.items()}


def grpo_history(beta: float = 0.04, upto: int = STEPS, run: int = 0) -> list[dict]:
    log = []
    for step in range(LOG_EVERY, upto + 1, LOG_EVERY):
        entry = {"loss": round(0.001 * step, 4), "grad_norm": 0.5, "learning_rate": 1e-6 * (1 - step / STEPS)}
        entry.update(grpo_metrics(step, run, beta), step_time=0.5)
        entry.update(epoch=step / STEPS, step=step)
        log.append(entry)
        if step % 20 == 0:  # an evaluation: eval_-prefixed keys, nothing else
            ev = {f"eval_{k}": v for k, v in grpo_metrics(step, run, beta).items()}
            ev.update(eval_runtime=1.5, eval_samples_per_second=10.0, eval_steps_per_second=1.0)
            log.append({**ev, "epoch": step / STEPS, "step": step})
    if upto == STEPS:  # Trainer's summary, with TRL's metrics of the (partial) window since the last log
        partial = {
            k: v for k, v in grpo_metrics(STEPS, run, beta).items() if k in ("kl", "reward", "rewards/gold/mean")
        }
        summary = {"train_runtime": 321.5, "train_samples_per_second": 1.0, "train_steps_per_second": 0.125}
        summary.update(total_flos=0.0, train_loss=0.02, **partial, epoch=1.0, step=STEPS)
        log.append(summary)
    return log


def trainer_state(log: list[dict], step: int) -> str:
    """HF TrainerState.save_to_json: json.dumps(asdict(state), indent=2, sort_keys=True) + newline."""
    state = {
        "best_global_step": None,
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": step / STEPS,
        "eval_steps": 20,
        "global_step": step,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": log,
        "logging_steps": LOG_EVERY,
        "max_steps": STEPS,
        "num_input_tokens_seen": 0,
        "num_train_epochs": 1,
        "save_steps": 20,
        "stateful_callbacks": {},
        "total_flos": 0.0,
        "train_batch_size": 8,
        "trial_name": None,
        "trial_params": None,
    }
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


MODEL_CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "model_type": "gpt2",
    "n_embd": 32,
    "n_head": 2,
    "n_layer": 2,
    "transformers_version": "4.57.1",
    "vocab_size": 1000,
}
GENERATION_CONFIG = {"_from_model_config": True, "bos_token_id": 0, "eos_token_id": 0, "transformers_version": "4.57.1"}


def _json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def files() -> dict[str, str]:
    """Relative path -> text of every text fixture."""
    out = {"grpo_run/config.json": _json(MODEL_CONFIG), "grpo_run/generation_config.json": _json(GENERATION_CONFIG)}
    for step in (20, 40):
        out[f"grpo_run/checkpoint-{step}/config.json"] = _json(MODEL_CONFIG)
        out[f"grpo_run/checkpoint-{step}/trainer_state.json"] = trainer_state(grpo_history(upto=step), step)
    out["grpo_beta0/checkpoint-40/config.json"] = _json(MODEL_CONFIG)
    out["grpo_beta0/checkpoint-40/trainer_state.json"] = trainer_state(grpo_history(beta=0.0), STEPS)
    out["grpo_log_history.jsonl"] = "".join(json.dumps(e) + "\n" for e in grpo_history())
    for name, key in (("wandb_kl.csv", "kl"), ("wandb_gold.csv", "rewards/gold/mean")):
        out[name] = wandb_panel(key)
    out["ppo_run/trainer_state.json"] = trainer_state(ppo_history(STEPS), STEPS)
    out["ppo_run/checkpoint-10/trainer_state.json"] = trainer_state(ppo_history(10), 10)
    out["openrlhf.jsonl"] = "".join(json.dumps(e) + "\n" for e in openrlhf_logs())
    return out


def wandb_panel(key: str) -> str:
    """A W&B line-plot panel's CSV export of `train/<key>` for runs grpo-a and grpo-b (HF's W&B names)."""
    runs = ("grpo-a", "grpo-b")
    header = ["Step"]
    for run in runs:
        header += [f"{run} - train/{key}", f"{run} - train/{key}__MIN", f"{run} - train/{key}__MAX"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for step in range(LOG_EVERY, STEPS + 1, LOG_EVERY):
        row = [step]
        for r, _ in enumerate(runs):
            if r == 1 and step > 30:  # the second run stopped earlier: empty cells
                row += ["", "", ""]
                continue
            v = grpo_metrics(step, r)[key]
            row += [repr(v), repr(v), repr(v)]
        w.writerow(row)
    return buf.getvalue()


def ppo_history(upto: int) -> list[dict]:
    log = []
    for step in range(1, upto + 1):
        kl_seq = 0.4 * step
        entry = {
            "eps": 3,
            "objective/kl": kl_seq,  # kl.sum(1).mean(): nats per sequence
            "objective/entropy": 60.0 - 0.2 * step,
            "objective/non_score_reward": -0.05 * kl_seq,
            "objective/rlhf_reward": 0.1 * math.sqrt(step) - 0.05 * kl_seq,
            "objective/scores": 0.1 * math.sqrt(step),
            "policy/approxkl_avg": 0.01,
            "policy/clipfrac_avg": 0.02,
            "loss/policy_avg": -0.01,
            "loss/value_avg": 0.1,
            "val/clipfrac_avg": 0.0,
            "policy/entropy_avg": 1.2,
            "val/ratio": 1.0,
            "val/ratio_var": 1e-5,
            "val/num_eos_tokens": 8,
            "lr": 3e-6,
            "episode": 64 * step,
            "gold": gold_of(kl_seq, step),  # a user's callback
            "epoch": step / STEPS,
            "step": step,
        }
        log.append({k: round(v, 10) if isinstance(v, float) else v for k, v in entry.items()})
    return log


def openrlhf_logs() -> list[dict]:
    logs = []
    for step in range(1, 31):
        kl_seq, length = 0.3 * step, 50.0 + step
        logs.append(
            {
                "policy_loss": -0.01,
                "actor_lr": 5e-7,
                "ppo_clip_ratio": 0.01,
                "ppo_kl": 0.001,
                "kl": round(kl_seq / length, 10),  # masked token mean: nats per token
                "reward": round(0.05 * step, 10),
                "return": round(0.05 * step - 0.01 * kl_seq, 10),
                "response_length": length,
                "total_length": length + 30.0,
                "gold": round(gold_of(kl_seq, step), 10),
                "global_step": step,
            }
        )
    return logs


TB_RUN = "grpo_run/runs/Jan01_00-00-00_fixture"
TB_FILE = "events.out.tfevents.1700000000.fixture.0.0"


def write_tensorboard(out: Path) -> bool:
    """grpo_run's scalars as HF's TensorBoardCallback writes them (fixed wall times); False without tensorboard."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError:
        return False
    path = out / TB_RUN / TB_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        writer = RecordWriter(f)
        writer.write(Event(wall_time=1700000000.0, file_version="brain.Event:2").SerializeToString())
        for entry in grpo_history():
            step = entry["step"]  # the summary too: HF's TensorBoardCallback writes every number of every log
            values = []
            for k, v in entry.items():
                if k in ("step",) or not isinstance(v, (int, float)):
                    continue
                tag = f"eval/{k[5:]}" if k.startswith("eval_") else f"train/{k}"
                values.append(Summary.Value(tag=tag, simple_value=float(v)))
            event = Event(wall_time=1700000000.0 + step, step=step, summary=Summary(value=values))
            writer.write(event.SerializeToString())
    return True


def main(out: Path) -> None:
    for rel, text in files().items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not write_tensorboard(out):
        print("tensorboard is not installed: no TensorBoard fixture written", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
