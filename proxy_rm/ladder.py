"""The proxy reward-model ladder: named sizes, trained on gold-labelled comparisons, calibrated, saved.

Every rung is an ensemble of `ensemble_size` members (seeds) trained in one vmapped program
(proxy_rm.train). Single-proxy experiments use member 0; ensemble objectives use all members.
A data-size sweep trains each size on nested subsets of one comparisons set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from core.checkpoint import load_state, save_state
from core.errors import UsageError
from core.store import atomic_write_json
from lm.model import ModelConfig, abstract
from proxy_rm.calibrate import bt_cross_entropy, fit_logit_scale, recentre_offset
from proxy_rm.train import Comparisons, ProxyReward, ProxyTrainConfig, rm_params, score, train_ensemble


@dataclass(frozen=True)
class ProxySize:
    """One rung of the ladder."""

    name: str
    """short name used in run ids, tables and figures (e.g. 'rm-4k')."""
    n_layer: int
    d_model: int
    n_head: int


@dataclass(frozen=True)
class LadderConfig:
    """Which proxies are trained, on how much data, and how."""

    sizes: tuple[ProxySize, ...] = ()
    """the size ladder, smallest first."""
    ensemble_size: int = 1
    """members per size, differing only by seed (initialisation and data order)."""
    data_sizes: tuple[int, ...] = ()
    """training-set sizes for the data-size sweep (nested subsets); empty: all training data only."""
    data_sweep_sizes: tuple[str, ...] = ()
    """names of the sizes the data-size sweep is run for (empty: every size)."""
    backbone: bool = False
    """start each proxy from an LM of its size pretrained on the world's corpus."""
    train: ProxyTrainConfig = field(default_factory=ProxyTrainConfig)
    seed: int = 0
    """base seed: member j of every rung uses seed `seed + j`."""


@dataclass
class TrainedProxy:
    """A trained, calibrated ensemble of one size and data size."""

    size: ProxySize
    model_cfg: ModelConfig
    data_size: int
    seeds: list[int]
    graphdef: object
    states: object  # stacked on a leading member axis
    offset: np.ndarray  # float[k]: subtract to recentre (initial policy's mean score is 0)
    logit_scale: np.ndarray  # float[k]
    val_loss: np.ndarray  # float[k] BT cross-entropy on validation (raw scale)
    val_loss_calibrated: np.ndarray  # float[k] after the logit scale
    val_acc: np.ndarray  # float[k]
    backbone: bool
    history: list = field(default_factory=list)
    pool: str = "last"  # how the scalar head becomes a score (proxy_rm.train.POOLS)
    prompt_len: int | None = None  # P of the token layout it was trained on (None: saved before it was kept)

    @property
    def rm_params(self) -> int:
        return rm_params(self.model_cfg)

    def scores(self, tokens, mask, prompt_len) -> np.ndarray:
        """Recentred scores of every member: float[k, N]."""
        raw = score(self.graphdef, self.states, tokens, mask, prompt_len, pool=self.pool)
        return raw - self.offset[:, None]

    def reward_scorer(self, objective: str = "single", lam: float = 1.0, *, prompt_len: int | None = None):
        """The recentred score (member 0, or the ensemble `objective` with `lam`) for RL: (ProxyReward,
        params) with params = (stacked states, offset f32[k]); an `rl.ppo.Scorer` is built from the pair.
        `prompt_len` defaults to the one the proxy was trained with."""
        prompt_len = self.prompt_len if prompt_len is None else prompt_len
        if prompt_len is None:
            raise ValueError("this proxy was saved without its prompt length: pass prompt_len")
        fn = ProxyReward(self.graphdef, int(prompt_len), self.pool, objective, float(lam))
        return fn, (self.states, jnp.asarray(self.offset, jnp.float32))

    def summary_rows(self) -> list[dict]:
        return [
            {
                "rm_name": self.size.name,
                "rm_params": self.rm_params,
                "data_size": self.data_size,
                "seed": s,
                "member": j,
                "val_loss": float(self.val_loss[j]),
                "val_loss_calibrated": float(self.val_loss_calibrated[j]),
                "val_acc": float(self.val_acc[j]),
                "logit_scale": float(self.logit_scale[j]),
                "offset": float(self.offset[j]),
                "backbone": bool(self.backbone),
                "n_layer": self.size.n_layer,
                "d_model": self.size.d_model,
                "n_head": self.size.n_head,
            }
            for j, s in enumerate(self.seeds)
        ]


def model_config(size: ProxySize, vocab_size: int, n_ctx: int, compute_dtype: str = "float32") -> ModelConfig:
    """The proxy's model: `compute_dtype` "bfloat16" runs its dense layers' matmuls in bfloat16 (weights float32)."""
    return ModelConfig(
        vocab_size=vocab_size,
        n_ctx=n_ctx,
        n_layer=size.n_layer,
        d_model=size.d_model,
        n_head=size.n_head,
        compute_dtype=compute_dtype,
    )


def train_proxy(
    size: ProxySize,
    cfg: LadderConfig,
    train: Comparisons,
    val: Comparisons,
    init_samples: tuple[np.ndarray, np.ndarray],
    vocab_size: int,
    n_ctx: int,
    backbone_state=None,
    on_epoch=None,
    compute_dtype: str = "float32",
) -> TrainedProxy:
    """Train one rung (an ensemble of one size) and calibrate it.

    Arguments:
      init_samples: (tokens, mask) sampled from the initial policy, for recentring.
      backbone_state: pretrained LM state of this size (used when cfg.backbone).
      compute_dtype: the dense layers' matmuls in training and scoring ("float32" or "bfloat16").
    """
    mcfg = model_config(size, vocab_size, n_ctx, compute_dtype)
    seeds = [cfg.seed + j for j in range(cfg.ensemble_size)]
    graphdef, states, history = train_ensemble(
        mcfg, cfg.train, train, val, seeds, backbone_state=backbone_state if cfg.backbone else None, on_epoch=on_epoch
    )
    P = train.prompt_len
    pool = cfg.train.pool
    va = score(graphdef, states, val.tokens_a, val.mask_a, P, pool=pool)
    vb = score(graphdef, states, val.tokens_b, val.mask_b, P, pool=pool)
    margins = va - vb
    sign = 2.0 * val.label.astype(np.float64) - 1.0
    val_acc = np.mean((sign[None] * margins > 0) + 0.5 * (margins == 0), axis=1)
    cal = [fit_logit_scale(m, val.label) for m in margins]
    offset = recentre_offset(score(graphdef, states, init_samples[0], init_samples[1], P, pool=pool))
    return TrainedProxy(
        size=size,
        model_cfg=mcfg,
        data_size=len(train),
        seeds=seeds,
        graphdef=graphdef,
        states=states,
        offset=np.asarray(offset, dtype=np.float64),
        logit_scale=np.array([c[0] for c in cal]),
        val_loss=np.array([bt_cross_entropy(m, val.label) for m in margins]),
        val_loss_calibrated=np.array([c[2] for c in cal]),
        val_acc=val_acc,
        backbone=bool(cfg.backbone and backbone_state is not None),
        history=history,
        pool=pool,
        prompt_len=P,
    )


def save_proxy(path: str | Path, proxy: TrainedProxy) -> None:
    """Orbax checkpoint of the stacked states plus a JSON sidecar with calibration (written last)."""
    path = Path(path)
    save_state(path / "state", proxy.states)
    meta = {
        "size": proxy.size.__dict__,
        "model_cfg": proxy.model_cfg.__dict__,
        "data_size": proxy.data_size,
        "seeds": proxy.seeds,
        "offset": proxy.offset.tolist(),
        "logit_scale": proxy.logit_scale.tolist(),
        "val_loss": proxy.val_loss.tolist(),
        "val_loss_calibrated": proxy.val_loss_calibrated.tolist(),
        "val_acc": proxy.val_acc.tolist(),
        "backbone": proxy.backbone,
        "history": proxy.history,
        "pool": proxy.pool,
        "prompt_len": proxy.prompt_len,
    }
    atomic_write_json(path / "proxy.json", meta)


def load_proxy(path: str | Path) -> TrainedProxy:
    """Inverse of save_proxy."""
    path = Path(path)
    meta = json.loads((path / "proxy.json").read_text())
    size = ProxySize(**meta["size"])
    mcfg = ModelConfig(**meta["model_cfg"])
    k = len(meta["seeds"])
    graphdef, abstract_state = abstract(mcfg, lm_head=False, scalar_head=True)
    stacked_abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct((k, *x.shape), x.dtype), abstract_state)
    states = load_state(path / "state", stacked_abstract)
    return TrainedProxy(
        size=size,
        model_cfg=mcfg,
        data_size=meta["data_size"],
        seeds=meta["seeds"],
        graphdef=graphdef,
        states=states,
        offset=np.asarray(meta["offset"]),
        logit_scale=np.asarray(meta["logit_scale"]),
        val_loss=np.asarray(meta["val_loss"]),
        val_loss_calibrated=np.asarray(meta["val_loss_calibrated"]),
        val_acc=np.asarray(meta["val_acc"]),
        backbone=meta["backbone"],
        history=meta.get("history", []),
        pool=meta.get("pool", "last"),
        prompt_len=meta.get("prompt_len"),
    )


def validate_ladder(cfg: LadderConfig) -> None:
    """Raise UsageError for a ladder that cannot be trained."""
    if not cfg.sizes:
        raise UsageError("ladder.sizes is empty: name at least one proxy size")
    names = [s.name for s in cfg.sizes]
    if len(set(names)) != len(names):
        raise UsageError(f"ladder.sizes has duplicate names: {names}")
    for s in cfg.sizes:
        if s.d_model % s.n_head:
            raise UsageError(f"proxy size '{s.name}': d_model {s.d_model} is not divisible by n_head {s.n_head}")
    unknown = set(cfg.data_sweep_sizes) - set(names)
    if unknown:
        raise UsageError(f"ladder.data_sweep_sizes names unknown sizes: {sorted(unknown)}")
    if cfg.ensemble_size < 1:
        raise UsageError("ladder.ensemble_size must be >= 1")
