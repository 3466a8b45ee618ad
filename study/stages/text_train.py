"""The text study's sampling and training stages (`study.text_study`; models and prompts: `text_models`).

  labels      `n_comparisons` pairs sampled from the policy on random bank prompts, scored by the gold (a
              torch gold outside every compiled program, batched), labelled by which it prefers (ties: a coin).
  pool        the best-of-n pool (`pool` responses for each of the first `bon_prompts` prompts), gold-scored
              once, with the policy's log-prob of each response from sampling.
  proxy[i]    backbone i's trunk with a new scalar head, trained on the pairs (Bradley-Terry,
              `lm.reward_train`), reading each response at its last token before EOS (`before_eos`: where
              its export, a transformers sequence classifier, reads the decoded text); saved, and exported
              as a Hugging Face sequence classifier to RUN/hf (usable as `overopt bon --proxy hf:RUN/hf`).
  bon[i]      proxy i's scores of the pool, recentred so the pool scores 0; best-of-n points of every
              selection rule (`ingest.bon_samples`), the gold recentred on the pool's mean.
  ppo[i]      PPO against proxy i (`kl_coefs` x `seeds`, one compiled grid, `rl.runner.train_grid`); the gold
              scores each evaluation's samples outside the program, on the pool's centre. Each grid point's
              trained policy is exported as a Hugging Face causal LM (its value head left out, the policy's
              tokenizer beside it) to RUN/hf/kl<kl_coef>-seed<seed> (`export_policies`; listed in
              policies.json), next to the points. A killed PPO stage is redone whole (the tiny grid takes
              seconds; no checkpoints inside it).

Prompts are left-padded (`lm.sampling.PaddedBank`): sampling, PPO and the proxies' training and scores take
each prompt's padding width, so a padded prompt scores as it does alone.

Every stage that calls the gold records what that took (`gold_rows`, `gold_seconds` in its DONE).
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from core import safe_read
from core.checkpoint import load_state, save_state
from core.config import from_dict, to_dict
from core.errors import UsageError
from core.store import atomic_write_bytes, atomic_write_json, atomic_write_parquet
from ingest.bon_samples import bon_tables, rule_tables
from lm.arch import ModelConfig, param_count
from lm.hf import export, load
from lm.hf.tokenizer import load_tokenizer
from lm.model import abstract
from lm.reward_train import Comparisons, score, train_ensemble
from lm.sampling import sample_many
from lm.scorer import HostGold, Scorer
from proxy_rm.train import ProxyReward
from rl.points import points_from_rows
from rl.ppo_config import stop_rule
from rl.runner import train_grid
from scaling.points import BON_PROMPTS, RULES
from study.stages.graph import Slot, Stage


def before_eos(tokens, mask, eos_id: int, prompt_len: int):
    """The response mask without its EOS: a proxy reads each response up to its last token before EOS, where
    transformers' sequence classifier reads the decoded text (which has no EOS) and, with PAD = EOS, the same
    token ids. numpy or traced arrays; eos_id -1 (none) changes nothing."""
    return mask & (tokens[:, prompt_len:] != eos_id)


@dataclasses.dataclass(frozen=True)
class BeforeEos:
    """A proxy's reward (`ProxyReward`) on responses without their EOS (`before_eos`), for the compiled PPO
    program: frozen and hashed by value, as the reward functions a program takes are."""

    inner: ProxyReward
    eos_id: int

    def __call__(self, params, tokens, mask, offsets=None):
        mask = before_eos(tokens, mask, self.eos_id, self.inner.prompt_len)
        return self.inner(params, tokens, mask, offsets=offsets)


def _strip_eos(data: Comparisons, eos_id: int) -> Comparisons:
    p = data.prompt_len
    ma, mb = before_eos(data.tokens_a, data.mask_a, eos_id, p), before_eos(data.tokens_b, data.mask_b, eos_id, p)
    return dataclasses.replace(data, mask_a=ma, mask_b=mb)


GOLD_READS = {"gold_batch": "gold_batch", "gold_device": "gold_device", "compute_dtype": "compute_dtype"}
SAMPLES = "samples.parquet"


def _save_npz(path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _done(ctx, run, gold, rows0, t0, **info) -> None:
    """DONE with the stage's seconds and, with a gold, the rows it scored and the seconds that took."""
    if gold is not None:
        cost = gold.cost()
        info |= {"gold_rows": cost["rows"] - rows0[0], "gold_seconds": cost["seconds"] - rows0[1]}
    run.mark_done(info | {"seconds": time.perf_counter() - t0})


def _gold_start(gold) -> tuple:
    cost = gold.cost()
    return cost["rows"], cost["seconds"]


SAMPLER_INPUTS = {"policy": "model:policy", "gold": "model:gold", "prompts": "prompts"}
"""What the stages that sample the policy and call the gold consume (labels, pool, ppo[i])."""


def _setup(ctx, inst) -> tuple:
    """(cfg, start time, policy, gold, prompt bank, the gold's cost so far) of a stage of `SAMPLER_INPUTS`."""
    t0 = time.perf_counter()
    policy, gold = ctx.policy(inst.inputs["policy"]), ctx.gold(inst)
    return ctx.cfg, t0, policy, gold, ctx.output(inst.inputs["prompts"])[0], _gold_start(gold)


def _sample_scored(cfg, policy, gold, prompts, offsets, key, n: int, batch_size: int) -> tuple:
    """(`n` responses a prompt from the policy (`sample_many`), their gold scores float64[B * n])."""
    s = sample_many(
        policy.graphdef, policy.state, prompts, key, n, max_new=cfg.max_new, temperature=cfg.temperature,
        batch_size=batch_size, offsets=offsets,
    )  # fmt: skip
    return s, np.asarray(gold.score(s.tokens, s.mask), np.float64)


# -- labels -----------------------------------------------------------------------------------------
def expand_labels(cfg) -> list[Slot]:
    reads = {"seed": "seed", "n": "n_comparisons", "temperature": "temperature", "max_new": "max_new"} | GOLD_READS
    return [Slot("labels", "text-labels", reads, SAMPLER_INPUTS)]


def compute_labels(ctx, run, inst) -> None:
    cfg, t0, policy, gold, bank, c0 = _setup(ctx, inst)
    rng = np.random.default_rng([cfg.seed, 1])
    idx = rng.integers(0, len(bank.ids), cfg.n_comparisons)
    key = jax.random.key(cfg.seed)
    s, g = _sample_scored(cfg, policy, gold, bank.ids[idx], bank.offsets[idx], key, 2, 256)
    a, b = slice(0, None, 2), slice(1, None, 2)
    label = np.where(g[a] == g[b], rng.integers(0, 2, len(idx)), g[a] > g[b]).astype(np.int8)
    arrays = {"ta": s.tokens[a], "ma": s.mask[a], "tb": s.tokens[b], "mb": s.mask[b], "offsets": bank.offsets[idx]}
    _save_npz(run.path / "comparisons.npz", label=label, **arrays)  # both sides of a pair share their prompt
    _done(ctx, run, gold, c0, t0, n=len(idx), frac_a=float(label.mean()))


def load_labels(ctx, run, inst) -> Comparisons:
    with np.load(run.path / "comparisons.npz") as z:
        p, o = z["ta"].shape[1] - z["ma"].shape[1], z["offsets"]
        return Comparisons(z["ta"], z["ma"], z["tb"], z["mb"], z["label"], p, offsets_a=o, offsets_b=o)


LABELS = Stage(
    "text_labels",
    reads=("seed", "n_comparisons", "temperature", "max_new", *GOLD_READS.values()),
    consumes=("text_model", "text_prompts"),
    writes=("comparisons.npz",),
    expand=expand_labels,
    compute=compute_labels,
    load=load_labels,
    doc="pairs sampled from the policy, labelled by the gold",
)


# -- pool -------------------------------------------------------------------------------------------
def expand_pool(cfg) -> list[Slot]:
    reads = {"seed": "seed", "bon_prompts": "bon_prompts", "pool": "pool", "temperature": "temperature"}
    reads |= {"max_new": "max_new"} | GOLD_READS
    return [Slot("pool", "text-pool", reads, SAMPLER_INPUTS)]


def compute_pool(ctx, run, inst) -> None:
    cfg, t0, policy, gold, bank, c0 = _setup(ctx, inst)
    prompts, offsets = bank.ids[: cfg.bon_prompts], bank.offsets[: cfg.bon_prompts]
    key = jax.random.key(cfg.seed + 7)
    s, g = _sample_scored(cfg, policy, gold, prompts, offsets, key, cfg.pool, max(256, cfg.pool))
    logp = np.minimum(np.where(s.mask, s.logprobs, 0.0).sum(axis=1), 0.0)
    n = param_count(policy.cfg)
    offsets = np.repeat(offsets, cfg.pool)  # a row's prompt padding (pool rows of a prompt in a row)
    _save_npz(
        run.path / "pool.npz", tokens=s.tokens, mask=s.mask, offsets=offsets, gold=g, ref_logprob=logp, policy_params=n
    )
    _done(ctx, run, gold, c0, t0, prompts=len(prompts), pool=cfg.pool, gold_mean=float(g.mean()))


def load_pool(ctx, run, inst) -> dict:
    """{"tokens", "mask", "offsets", "gold", "ref_logprob", "policy_params"} of the pool, pool responses a prompt
    in a row."""
    with np.load(run.path / "pool.npz") as z:
        return {k: z[k] for k in z.files}


POOL = Stage(
    "text_pool",
    reads=("seed", "bon_prompts", "pool", "temperature", "max_new", *GOLD_READS.values()),
    consumes=("text_model", "text_prompts"),
    writes=("pool.npz",),
    expand=expand_pool,
    compute=compute_pool,
    load=load_pool,
    doc="the best-of-n pool, gold-scored once",
)


# -- proxies ----------------------------------------------------------------------------------------
def expand_proxy(cfg) -> list[Slot]:
    reads = {"train": "train", "seed": "seed", "compute_dtype": "compute_dtype"}
    return [
        Slot(f"proxy[{i}]", f"text-proxy-{i}", reads,
             {"labels": "labels", "backbone": f"model:backbone[{i}]", "policy": "model:policy"}, {"index": i})
        for i in range(len(cfg.backbones))
    ]  # fmt: skip


def compute_proxy(ctx, run, inst) -> None:
    cfg, t0, i = ctx.cfg, time.perf_counter(), inst.params["index"]
    policy = ctx.policy(inst.inputs["policy"])
    path = ctx.output(inst.inputs["backbone"])[1]
    if load_tokenizer(path).get_vocab() != policy.tokenizer.get_vocab():  # check_tokenizers refused it up front
        raise UsageError(f"backbone {path}: its tokenizer is not the policy's (proxies score the policy's tokens)")
    data = _strip_eos(ctx.output(inst.inputs["labels"]), policy.cfg.eos_id)  # scored as text: no EOS
    train, val = data.split(cfg.train.val_frac, cfg.seed)
    imp = load(path, role="policy", compute_dtype=cfg.compute_dtype)
    mcfg = dataclasses.replace(imp.cfg, eos_id=policy.cfg.eos_id, pad_id=policy.cfg.pad_id, forbidden=())
    if data.tokens_a.shape[1] > mcfg.n_ctx:
        raise UsageError(f"backbone {path}: context {mcfg.n_ctx} < prompt + response {data.tokens_a.shape[1]}")
    graphdef, states, history = train_ensemble(mcfg, cfg.train, train, val, [cfg.seed + 100 + i], imp.state)
    n = param_count(mcfg, lm_head=False, scalar_head=True)
    name = f"rm-{i}-{imp.family}-{n}"
    export(run.path / "hf", graphdef, jax.tree.map(lambda x: x[0], states), copy_from=path, drop_score_bias=True)
    save_state(run.path / "state", states)
    last = history[-1]
    meta = {"name": name, "rm_params": n, "family": imp.family, "backbone": str(path), "model_cfg": to_dict(mcfg)}
    meta |= {"val_loss": float(last["val/loss"][0]), "val_acc": float(last["val/acc"][0]), "data_size": len(data)}
    atomic_write_json(run.path / "proxy.json", meta)
    ctx.log(f"proxy {name}: val acc {meta['val_acc']:.3f}, loss {meta['val_loss']:.3f}")
    run.mark_done({"seconds": time.perf_counter() - t0})


def load_proxy(ctx, run, inst) -> dict:
    """proxy.json's fields plus graphdef and states (stacked over one member), hf (its export) and eos_id."""
    meta = safe_read.read_json(run.path / "proxy.json")
    mcfg = from_dict(ModelConfig, meta["model_cfg"])
    graphdef, one = abstract(mcfg, lm_head=False, scalar_head=True)
    stacked = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), one)
    states = load_state(run.path / "state", stacked)
    return meta | {"graphdef": graphdef, "states": states, "hf": run.path / "hf", "eos_id": mcfg.eos_id}


PROXY = Stage(
    "text_proxy",
    reads=("train", "seed", "compute_dtype"),
    consumes=("text_labels", "text_model"),
    writes=("proxy.json", "state/", "hf/"),
    expand=expand_proxy,
    compute=compute_proxy,
    load=load_proxy,
    doc="a proxy from each backbone, trained on the labelled pairs and exported",
)


# -- best-of-n --------------------------------------------------------------------------------------
def expand_bon(cfg) -> list[Slot]:
    reads = {"pool": "pool", "rm_pool": "train.pool"}  # (both in its inputs' keys already: declared as read)
    return [
        Slot(f"bon[{i}]", f"text-bon-{i}", reads, {"pool": "pool", "proxy": f"proxy[{i}]"})
        for i in range(len(cfg.backbones))
    ]


def compute_bon(ctx, run, inst) -> None:
    t0 = time.perf_counter()
    pool, p = ctx.output(inst.inputs["pool"]), ctx.output(inst.inputs["proxy"])
    tokens, mask = pool["tokens"], pool["mask"]
    plen = tokens.shape[1] - mask.shape[1]
    scored = before_eos(tokens, mask, p["eos_id"], plen)
    raw = score(p["graphdef"], p["states"], tokens, scored, plen, pool=ctx.cfg.train.pool, offsets=pool["offsets"])[0]
    offset = float(raw.mean())  # recentred: the initial policy's pool scores 0
    n_pool = ctx.cfg.pool
    ids = [" ".join(map(str, r[: int(m.sum())])) for r, m in zip(tokens[:, plen:], mask, strict=True)]
    samples = pd.DataFrame(
        {"prompt": np.repeat(np.arange(len(tokens) // n_pool), n_pool), "response": ids,
         "ref_logprob": pool["ref_logprob"], "proxy": raw - offset, "gold": pool["gold"], "rm_params": p["rm_params"],
         "policy_params": int(pool["policy_params"])}
    )  # fmt: skip
    points, rows = bon_tables(samples, recentre="first")
    points = pd.concat([points, rule_tables(samples, RULES, recentre="first")], ignore_index=True)
    run.write_points(points)
    atomic_write_parquet(run.path / BON_PROMPTS, rows)
    atomic_write_parquet(run.path / SAMPLES, samples)
    atomic_write_json(run.path / "centre.json", {"offset": offset, "gold_centre": float(pool["gold"].mean())})
    run.mark_done({"seconds": time.perf_counter() - t0})


def load_bon(ctx, run, inst) -> dict:
    """{"offset": the proxy's pool mean, "gold_centre": the gold's pool mean}."""
    return safe_read.read_json(run.path / "centre.json")


BON = Stage(
    "text_bon",
    reads=("pool", "train.pool"),
    consumes=("text_pool", "text_proxy"),
    writes=("points.parquet", BON_PROMPTS, SAMPLES, "centre.json"),
    expand=expand_bon,
    compute=compute_bon,
    load=load_bon,
    doc="best-of-n points of each proxy on the pool",
)


# -- PPO --------------------------------------------------------------------------------------------
def expand_ppo(cfg) -> list[Slot]:
    if not cfg.rl_enabled:
        return []
    reads = {"ppo": "ppo", "kl_coefs": "kl_coefs", "seeds": "seeds", "rm_pool": "train.pool"} | GOLD_READS
    return [
        Slot(f"ppo[{i}]", f"text-ppo-{i}", reads, SAMPLER_INPUTS | {"proxy": f"proxy[{i}]", "bon": f"bon[{i}]"})
        for i in range(len(cfg.backbones))
    ]


def compute_ppo(ctx, run, inst) -> None:
    cfg, t0, policy, gold, bank, c0 = _setup(ctx, inst)
    p, centre = ctx.output(inst.inputs["proxy"]), ctx.output(inst.inputs["bon"])
    grid = [(float(k), int(s)) for k in cfg.kl_coefs for s in cfg.seeds]

    def host_gold(tokens, mask):
        return np.asarray(gold.score(tokens, mask), np.float64) - centre["gold_centre"]

    fn = BeforeEos(ProxyReward(p["graphdef"], int(bank.shape[1]), cfg.train.pool), p["eos_id"])
    reward = Scorer(fn, (p["states"], jnp.asarray([centre["offset"]], jnp.float32)))
    results = train_grid(
        (policy.graphdef, policy.state), reward, Scorer(HostGold(), ()), bank, cfg.ppo, grid, host_gold=host_gold
    )
    rows = [r for res in results for r in res["eval"]]
    pts = points_from_rows(rows, p["rm_params"], param_count(policy.cfg), stop_rule=stop_rule(cfg.ppo), algo="ppo")
    exported = export_policies(run.path, results, policy.path)
    run.write_points(pts)
    ctx.log(f"ppo against {p['name']}: {len(rows)} evaluations; policies in {run.path / 'hf'}")
    _done(ctx, run, gold, c0, t0, evaluations=len(rows), policies=exported)


def export_policies(path, results, source) -> dict:
    """Each grid point's trained policy (`train_grid`'s results) as a Hugging Face causal LM in
    path/hf/kl<kl_coef>-seed<seed> (the value head left out; the tokenizer and generation files of the
    checkpoint `source` copied beside it), listed in path/policies.json. Returns {"kl..-seed..": "hf/..."}."""
    out = {}
    for r in results:
        name = f"kl{r['kl_coef']:g}-seed{r['seed']}"
        export(Path(path) / "hf" / name, r["graphdef"], r["state"], copy_from=source)
        out[name] = f"hf/{name}"
    atomic_write_json(Path(path) / "policies.json", out)
    return out


PPO = Stage(
    "text_ppo",
    reads=("ppo", "kl_coefs", "seeds", "train.pool", *GOLD_READS.values()),
    consumes=("text_model", "text_prompts", "text_proxy", "text_bon"),
    writes=("points.parquet", "hf/", "policies.json"),
    expand=expand_ppo,
    compute=compute_ppo,
    load=lambda ctx, run, inst: None,
    exclude=("ppo.kl_coef",),
    doc="PPO against each proxy, the gold outside the program",
)
