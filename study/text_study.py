"""The text study (`overopt study --preset text-tiny`): Gao et al.'s pipeline on Hugging Face models in the
text world, in one go (no stage store, no resume: the tiny preset runs in minutes).

1. models: `tiny:` references are built into DIR/models (`lm.hf.tiny`, `save_pretrained`); others are read.
2. prompts: the built-in prompts or a file, tokenized by the policy's tokenizer; each prompt of at least K tokens
   (K = `prompt_tokens`) keeps its last K, shorter ones are left out (counted in text_study.json), so that no row
   of the compiled programs is padded.
3. labels: `n_comparisons` pairs of responses sampled from the policy, scored by the gold (a torch gold outside
   every compiled program, batched), labelled by which the gold prefers (ties: a fair coin).
4. proxy ladder: each backbone's trunk with a new scalar head, trained on the pairs (`lm.reward_train`,
   Bradley-Terry); recentred so that the initial policy's pool scores 0; exported as a Hugging Face
   sequence classifier to DIR/proxies/<name> (usable as `overopt bon --proxy hf:DIR`).
5. best-of-n: one pool (`pool` responses for each of `bon_prompts` prompts), scored by every proxy and the
   gold; points of every selection rule (`ingest.bon_samples`), gold recentred on the pool's mean.
6. PPO: against each proxy (`kl_coefs` x `seeds`, one compiled grid, `rl.runner.train_grid`); the gold scores
   each evaluation's samples outside the program (`host_gold`), on the pool's centre.
7. finish: `study.finish` (points, proxies, fits, criteria, figures, report) and DIR/text_study.json (the config,
   each step's seconds, the gold's cost).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from core.config import to_dict
from core.errors import UsageError
from core.log import log
from core.store import atomic_write_json, atomic_write_parquet
from gold_rm.factory import gold_by_name
from gold_rm.text_world import TextWorld, read_prompts
from ingest.bon_samples import bon_tables, rule_tables
from lm.arch import param_count
from lm.hf import export, load, tiny
from lm.hf.text_rm import parse_ref
from lm.hf.tokenizer import Prompts, encode, load_tokenizer, special_ids
from lm.model import abstract
from lm.reward_train import Comparisons, score, train_ensemble
from lm.sampling import sample_many
from lm.scorer import HostGold, Scorer
from proxy_rm.train import ProxyReward
from rl.points import points_from_rows
from rl.ppo_config import stop_rule
from rl.runner import train_grid
from scaling.points import RULES
from study.finish import render, write_results
from study.text_config import TextStudyConfig

BUILTIN_PROMPTS = tuple(
    f"{a} {b}"
    for a in ("please write", "how do you", "the gold model", "a reward model", "best of n", "the quick brown fox")
    for b in ("a short answer about tea", "the lazy dog", "what we trust", "keeps the response", "scores the text")
)
MARKER = "text_study.json"


@dataclasses.dataclass
class Policy:
    graphdef: object
    state: object
    cfg: object
    tokenizer: object
    path: Path


def resolve_models(cfg: TextStudyConfig, out: Path) -> dict:
    """{"policy": DIR, "gold": (scheme, DIR), "backbones": [DIR...]}: `tiny:` references built under DIR/models."""
    models = out / "models"
    tok_dir = models / "tokenizer"

    def build(ref: str, name: str, reward: bool, seed: int) -> Path:
        parts = ref.split(":")
        if not tok_dir.exists():
            tiny.tokenizer(tok_dir)
        width = int(parts[2])
        heads = max(1, width // 8)
        path = models / name
        return tiny.model(path, parts[1], reward=reward, seed=seed, tokenizer_from=tok_dir, width=width, heads=heads)

    def ref_path(ref: str, name: str, reward: bool, seed: int, allowed=("hf",)):
        if ref.startswith("tiny:"):
            return ("torch" if reward else "hf"), build(ref, name, reward, seed)
        return parse_ref(ref, allowed=allowed, what=name)

    check_refs(cfg)

    policy = ref_path(cfg.policy, "policy", False, 1)[1]
    gold = ref_path(cfg.gold, "gold", True, 2, allowed=("hf", "torch"))
    backbones = [ref_path(b, f"backbone-{i}", False, 10 + i)[1] for i, b in enumerate(cfg.backbones)]
    return {"policy": policy, "gold": gold, "backbones": backbones}


def check_refs(cfg: TextStudyConfig) -> None:
    """Every model reference well formed (and every directory there) before anything is written."""

    def one(ref: str, name: str, allowed=("hf",)):
        if ref.startswith("tiny:"):
            parts = ref.split(":")
            if (
                len(parts) != 3
                or parts[1] not in tiny.FAMILIES
                or not parts[2].isdigit()
                or not 8 <= int(parts[2]) <= 512
            ):
                raise UsageError(
                    f"{name} {ref!r}: a tiny model is tiny:FAMILY:WIDTH ({', '.join(tiny.FAMILIES)}; 8..512)"
                )
        else:
            parse_ref(ref, allowed=allowed, what=name)

    one(cfg.policy, "policy")
    one(cfg.gold, "gold", ("hf", "torch"))
    for i, b in enumerate(cfg.backbones):
        one(b, f"backbones[{i}]")


def check_backbones(policy: Policy, paths) -> None:
    """Every backbone's tokenizer is the policy's: the proxies score the policy's tokens."""
    vocab = policy.tokenizer.get_vocab()
    for path in paths:
        if load_tokenizer(path).get_vocab() != vocab:
            raise UsageError(f"backbone {path}: its tokenizer is not the policy's (proxies score the policy's tokens)")


def load_policy(path: Path, compute_dtype: str = "float32") -> Policy:
    imp = load(path, role="policy", compute_dtype=compute_dtype)
    tok = load_tokenizer(path)
    eos, pad = special_ids(tok, imp.hf_config)
    cfg = dataclasses.replace(imp.cfg, eos_id=eos, pad_id=pad, forbidden=())
    graphdef, _ = abstract(cfg)
    return Policy(graphdef, imp.state, cfg, tok, path)


def prompt_texts(cfg: TextStudyConfig) -> list[str]:
    return read_prompts(cfg.prompts, cfg.prompt_column or None) if cfg.prompts else list(BUILTIN_PROMPTS)


def prompt_bank(cfg: TextStudyConfig, policy: Policy, texts) -> tuple[np.ndarray, list[str], int]:
    """(int32[M, K], their texts, how many prompts were dropped): the prompts of at least K = prompt_tokens
    tokens, each cut to its last K (see the module docstring)."""
    k = cfg.prompt_tokens
    if k + cfg.max_new > policy.cfg.n_ctx:
        raise UsageError(f"prompt_tokens {k} + max_new {cfg.max_new} exceed the policy's context {policy.cfg.n_ctx}")
    kept = [(t, x) for t, x in zip(encode(policy.tokenizer, texts), texts, strict=True) if len(t) >= k]
    if not kept:
        raise UsageError(f"no prompt has prompt_tokens={k} tokens under the policy's tokenizer: lower it")
    dropped = len(texts) - len(kept)
    if dropped:
        log(f"{dropped} of {len(texts)} prompts have fewer than {k} tokens: left out")
    return np.array([t[-k:] for t, _ in kept], np.int32), [x for _, x in kept], dropped


def text_world(policy: Policy, bank: np.ndarray, texts) -> TextWorld:
    """The text world of the bank's unpadded prompts (what the gold decodes)."""
    eos, pad = policy.cfg.eos_id, policy.cfg.pad_id
    return TextWorld(tuple(texts), policy.tokenizer, eos, pad, Prompts(bank, np.zeros(len(bank), np.int32), 0))


def labels(cfg, policy: Policy, bank, gold) -> Comparisons:
    """Pairs sampled from the policy on random bank prompts, labelled by the gold."""
    rng = np.random.default_rng([cfg.seed, 1])
    idx = rng.integers(0, len(bank), cfg.n_comparisons)
    s = sample_many(
        policy.graphdef, policy.state, bank[idx], jax.random.key(cfg.seed), 2, max_new=cfg.max_new,
        temperature=cfg.temperature, batch_size=256,
    )  # fmt: skip
    g = gold.score(s.tokens, s.mask)
    a, b = slice(0, None, 2), slice(1, None, 2)
    label = np.where(g[a] == g[b], rng.integers(0, 2, len(idx)), g[a] > g[b]).astype(np.int8)
    return Comparisons(s.tokens[a], s.mask[a], s.tokens[b], s.mask[b], label, bank.shape[1])


def train_proxies(cfg, policy: Policy, paths, data: Comparisons, out: Path) -> list[dict]:
    """Each backbone's proxy: {name, graphdef, states, rm_params, val_loss, val_acc, backbone}."""
    train, val = data.split(cfg.train.val_frac, cfg.seed)
    proxies = []
    for i, path in enumerate(paths):
        imp = load(path, role="policy", compute_dtype=cfg.compute_dtype)
        mcfg = dataclasses.replace(imp.cfg, eos_id=policy.cfg.eos_id, pad_id=policy.cfg.pad_id, forbidden=())
        if data.tokens_a.shape[1] > mcfg.n_ctx:
            raise UsageError(f"backbone {path}: context {mcfg.n_ctx} < prompt + response {data.tokens_a.shape[1]}")
        graphdef, states, history = train_ensemble(mcfg, cfg.train, train, val, [cfg.seed + 100 + i], imp.state)
        n = param_count(mcfg, lm_head=False, scalar_head=True)
        name = f"rm-{i}-{imp.family}-{n}"
        member = jax.tree.map(lambda x: x[0], states)
        export(out / "proxies" / name, graphdef, member, copy_from=path, drop_score_bias=True)
        last = history[-1]
        proxies.append(
            {"name": name, "graphdef": graphdef, "states": states, "rm_params": n, "backbone": str(path),
             "val_loss": last["val/loss"][0], "val_acc": last["val/acc"][0], "family": imp.family}
        )  # fmt: skip
        log(f"proxy {name}: val acc {last['val/acc'][0]:.3f}, loss {last['val/loss'][0]:.3f}")
    return proxies


def best_of_n(cfg, policy: Policy, bank, gold, proxies) -> tuple:
    """(samples table, points, per-prompt rows, gold centre): the pool once, every proxy and the gold."""
    prompts = bank[: cfg.bon_prompts]
    s = sample_many(
        policy.graphdef, policy.state, prompts, jax.random.key(cfg.seed + 7), cfg.pool, max_new=cfg.max_new,
        temperature=cfg.temperature, batch_size=max(256, cfg.pool),
    )  # fmt: skip
    g = np.asarray(gold.score(s.tokens, s.mask), np.float64)
    logp = np.minimum(np.where(s.mask, s.logprobs, 0.0).sum(axis=1), 0.0)
    resp = s.tokens[:, bank.shape[1] :]
    ids = [" ".join(map(str, r[: int(m.sum())])) for r, m in zip(resp, s.mask, strict=True)]
    frames = []
    for p in proxies:
        raw = score(p["graphdef"], p["states"], s.tokens, s.mask, bank.shape[1])[0]
        p["offset"] = float(raw.mean())  # recentred: the initial policy's pool scores 0
        frames.append(
            pd.DataFrame(
                {"prompt": np.repeat(np.arange(len(prompts)), cfg.pool), "response": ids, "ref_logprob": logp,
                 "proxy": raw - p["offset"], "gold": g, "rm_params": p["rm_params"],
                 "policy_params": param_count(policy.cfg)}
            )
        )  # fmt: skip
    samples = pd.concat(frames, ignore_index=True)
    points, rows = bon_tables(samples, recentre="first")
    extra = rule_tables(samples, RULES, recentre="first")
    return samples, pd.concat([points, extra], ignore_index=True), rows, float(g.mean())


def ppo(cfg, policy: Policy, bank, gold, proxies, centre: float) -> pd.DataFrame:
    """PPO against each proxy; the gold outside the program on the evaluation samples, recentred."""
    frames = []
    grid = [(float(k), int(s)) for k in cfg.kl_coefs for s in cfg.seeds]

    def host_gold(tokens, mask):
        return np.asarray(gold.score(tokens, mask), np.float64) - centre

    for p in proxies:
        fn = ProxyReward(p["graphdef"], int(bank.shape[1]), cfg.train.pool)
        reward = Scorer(fn, (p["states"], jnp.asarray([p["offset"]], jnp.float32)))
        results = train_grid(
            (policy.graphdef, policy.state), reward, Scorer(HostGold(), ()), bank, cfg.ppo, grid, host_gold=host_gold
        )
        rows = [r for res in results for r in res["eval"]]
        frames.append(
            points_from_rows(rows, p["rm_params"], param_count(policy.cfg), stop_rule=stop_rule(cfg.ppo), algo="ppo")
        )
        log(f"ppo against {p['name']}: {len(rows)} evaluations")
    return pd.concat(frames, ignore_index=True)


def run(cfg: TextStudyConfig, out: Path) -> dict:
    """The whole text study into `out` (see the module docstring). Returns the write_results summary."""
    out = Path(out)
    if (out / MARKER).exists() or (out / "points.parquet").exists():
        raise UsageError(f"--out {out} holds a study already (no resume for text studies): choose another")
    check_refs(cfg)  # bad input: one line, nothing written
    texts = prompt_texts(cfg)
    out.mkdir(parents=True, exist_ok=True)
    seconds, t0 = {}, time.perf_counter()

    def lap(name):
        nonlocal t0
        seconds[name] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()

    paths = resolve_models(cfg, out)
    policy = load_policy(paths["policy"], cfg.compute_dtype)
    check_backbones(policy, paths["backbones"])
    bank, texts, dropped = prompt_bank(cfg, policy, texts)
    world = text_world(policy, bank, texts)
    scheme, gold_dir = paths["gold"]
    gold = gold_by_name(f"{scheme}:{gold_dir}", text_world=world, batch_size=cfg.gold_batch, device=cfg.gold_device)
    lap("models")
    data = labels(cfg, policy, bank, gold)
    lap("labels")
    proxies = train_proxies(cfg, policy, paths["backbones"], data, out)
    lap("proxies")
    samples, points, prompt_rows, centre = best_of_n(cfg, policy, bank, gold, proxies)
    lap("best_of_n")
    if cfg.rl_enabled:
        points = pd.concat([points, ppo(cfg, policy, bank, gold, proxies, centre)], ignore_index=True)
        lap("ppo")
    table = pd.DataFrame(
        [{"rm_name": p["name"], "rm_params": p["rm_params"], "data_size": len(data), "seed": cfg.seed, "member": 0,
          "val_loss": p["val_loss"], "val_acc": p["val_acc"], "offset": p["offset"], "backbone": True,
          "family": p["family"]} for p in proxies]
    )  # fmt: skip
    atomic_write_parquet(out / "samples.parquet", samples)
    res = write_results(out, points, table, bon_prompts=prompt_rows, preset=cfg.preset)
    render(out)
    lap("finish")
    info = {
        "config": to_dict(cfg),
        "seconds": sum(seconds.values()),
        "step_seconds": seconds,
        "gold_cost": gold.cost(),
        "prompt_tokens": int(bank.shape[1]),
        "prompts": len(texts),
        "prompts_dropped": dropped,
    }
    atomic_write_json(out / MARKER, info)
    return {**res, "proxies": table, "info": info}
