"""The synthetic world's gold reward model: a deterministic, jittable sum of named components.

Components (each reported separately; `score` is their weighted sum):
  task        fraction of the k target positions matched by the response with FLATTER removed
              (needs capacity to judge: `map` is a per-position interaction with the prompt).
  fluency     mean log-prob of the response tokens under the corpus bigram model, minus its corpus mean.
  length      concave in the number of content symbols (FLATTER and EOS excluded): rewarded up to
              the target length, penalised beyond.
  flattery    concave in the number of FLATTER tokens (rewarded up to `flattery_cap`, penalised beyond).
  repetition  concave in the number of adjacent equal content symbols.
  echo        concave in the number of positions i < k where the response repeats prompt symbol s_i
              although the target differs there (restating the question instead of answering it).
  teacher     a frozen random MLP over one-hot (position, token), standardised on the corpus (weight 0
              by default): a smooth, nearly linear term that only adds regressional Goodhart.
  bank<i>     only with a bank (`WorldConfig.bank_k` > 0; `gold_rm.bank`): concave in the count of marker
              token i, with its own cap, slope and weight (weights summing to w_bank); markers are
              stripped like FLATTER before task, length and repetition are judged.
Each concave shape is `(min(x, cap) - slope * max(x - cap, 0)) / cap`: 1 at the cap, 0 at x = 0.
Without global exploits (`WorldConfig.global_exploits=False`, W1): the flattery component is 0 and FLATTER is not
stripped: it is judged as a content token that is never right (it takes a position in the task comparison,
counts toward length, repeats with an adjacent FLATTER, never echoes), exactly as a symbol that matches neither
the target, the prompt nor its neighbours would be; only fluency tells them apart (the corpus never shows
FLATTER, so its bigrams are the smoothing floor). No single token then has a term of its own.
With several forms per symbol (`WorldConfig.variants` > 1) every term reads canonical tokens (`World.canon`: each
form as its symbol; the bigram model is counted on canonical tokens too), so the gold never sees which form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from core.errors import UsageError
from core.store import OMIT_DEFAULT
from core.tokens import EOS, PAD
from gold_rm.bank import BankParams, draw_bank, validate_gold
from gold_rm.learned_config import LearnedGoldConfig, validate_learned
from gold_rm.world import ALL_TASKS, FLATTER, SYMBOL0, TASK0, World

COMPONENTS = ("task", "fluency", "length", "flattery", "repetition", "echo", "teacher")
_CALIB_STREAM, _TEACHER_STREAM, _BANK_STREAM = 201, 202, 203


@dataclass(frozen=True)
class GoldConfig:
    """Weights and shapes of the gold components."""

    w_task: float = 1.0
    """weight of task quality (in [0, 1])."""
    w_fluency: float = 0.25
    """weight of centred bigram fluency (nats per token)."""
    w_length: float = 0.3
    """weight of the concave length term."""
    w_flattery: float = 0.5
    """weight of the concave flattery term."""
    w_repetition: float = 0.2
    """weight of the concave repetition term."""
    w_echo: float = 0.2
    """weight of the concave echo term."""
    w_teacher: float = 0.0
    """weight of the standardised random-teacher term (0: off)."""
    length_cap: int = 0
    """content length rewarded up to this many symbols (0: the target length k)."""
    length_slope: float = 1.0
    """penalty per symbol beyond length_cap, relative to the reward per symbol below it."""
    flattery_cap: int = 2
    """FLATTER count rewarded up to this (DESIGN: about 2)."""
    flattery_slope: float = 1.5
    """penalty per FLATTER token beyond the cap, relative to the reward per token below it."""
    repetition_cap: int = 1
    """adjacent repeats rewarded up to this many."""
    repetition_slope: float = 1.0
    """penalty per adjacent repeat beyond the cap, relative to the reward below it."""
    echo_cap: int = 1
    """echoed (wrong) prompt symbols rewarded up to this many."""
    echo_slope: float = 1.0
    """penalty per echoed symbol beyond the cap, relative to the reward below it."""
    fluency_samples: int = 20000
    """corpus responses the bigram model is estimated from (drawn from the world seed)."""
    fluency_smoothing: float = 0.1
    """add-constant smoothing of the bigram counts."""
    teacher_hidden: int = 32
    """hidden width of the random teacher MLP."""
    calib_samples: int = 8192
    """corpus responses used to centre fluency and standardise the teacher."""
    seed: int = 0
    """with the world seed, seeds the teacher weights, the calibration sample and the bank's assignment."""
    w_bank: float = field(default=1.0, metadata=OMIT_DEFAULT)
    """total weight of the bank's features (only with WorldConfig.bank_k > 0): their weights sum to it."""
    bank_cap_min: int = field(default=1, metadata=OMIT_DEFAULT)
    """the bank's caps are integers evenly spread from this ..."""
    bank_cap_max: int = field(default=4, metadata=OMIT_DEFAULT)
    """... to this, one per feature, assigned to the features in an order drawn from the seeds."""
    bank_slope_min: float = field(default=0.5, metadata=OMIT_DEFAULT)
    """the bank's penalty slopes are log-spaced from this (evenly spaced from 0) ..."""
    bank_slope_max: float = field(default=3.0, metadata=OMIT_DEFAULT)
    """... to this (relative to the reward per marker below the cap), assigned in a drawn order."""
    bank_weight_ratio: float = field(default=4.0, metadata=OMIT_DEFAULT)
    """the bank's weights are log-spaced with this ratio of the largest to the smallest, sum w_bank."""
    kind: Literal["formula", "learned"] = field(default="formula", metadata=OMIT_DEFAULT)
    """which gold the study uses: "formula" (this hand-written sum, `GoldRM`) or "learned" (a transformer reward
    model trained on this formula's preferences, `gold_rm.learned`; the study's "gold" stage trains it)."""
    learned: LearnedGoldConfig = field(default_factory=LearnedGoldConfig, metadata=OMIT_DEFAULT)
    """the learned gold's size, data, optimisation and label noise (read with kind "learned")."""


def concave(x, cap, slope):
    """Rewarded up to `cap`, penalised beyond: (min(x, cap) - slope * max(x - cap, 0)) / cap."""
    return (jnp.minimum(x, cap) - slope * jnp.maximum(x - cap, 0)) / cap


class GoldRM:
    """Gold reward model of a `World`. `components` and `score` are jittable and vectorised.

    The computation is one module-level jitted function of (arrays, tokens, mask) with the config
    static, so GoldRMs of equal configs share compilations; eager calls pad the batch to a bucket
    (powers of two up to 8192, then multiples of 8192) so varied batch sizes reuse them too.
    """

    def __init__(self, world: World, cfg: GoldConfig = GoldConfig()):
        validate(cfg)
        self.world, self.cfg = world, cfg
        self.k, self.prompt_len = world.k, world.prompt_len
        S, V, H = world.seq_len, world.vocab_size, cfg.teacher_hidden
        trng = np.random.default_rng([world.cfg.seed, cfg.seed, _TEACHER_STREAM])
        bigram = world.bigram_logprobs(cfg.fluency_samples, cfg.fluency_smoothing)
        brng = np.random.default_rng([world.cfg.seed, cfg.seed, _BANK_STREAM])
        self.bank = draw_bank(
            world.bank_k,
            brng,
            cap_min=cfg.bank_cap_min,
            cap_max=cfg.bank_cap_max,
            slope_min=cfg.bank_slope_min,
            slope_max=cfg.bank_slope_max,
            weight_ratio=cfg.bank_weight_ratio,
            w_bank=cfg.w_bank,
        )
        """the bank's per-feature caps, slopes and weights (`gold_rm.bank.BankParams`; K = 0: empty)."""
        # arrays the computation reads: arguments of the jitted function, not constants baked into it
        self.consts = {
            "bigram": jnp.asarray(bigram, jnp.float32),
            "perm_tokens": jnp.asarray(SYMBOL0 + world.perm, jnp.int32),
            "teacher_w1": jnp.asarray(trng.standard_normal((S, V, H)) / np.sqrt(S), jnp.float32),
            "teacher_w2": jnp.asarray(trng.standard_normal(H) / np.sqrt(H), jnp.float32),
            "fluency_offset": jnp.float32(0.0),
            "teacher_mean": jnp.float32(0.0),
            "teacher_std": jnp.float32(1.0),
        }
        if self.bank.k:  # only with a bank: without one the computation is the one it always was
            self.consts.update(_bank_consts(self.bank, world.bank0))
        if world.cfg.variants > 1:  # only with forms: every term reads canonical tokens
            self.consts["canon"] = jnp.asarray(world.canon, jnp.int32)
        cap = cfg.length_cap or world.k
        self._static = dict(cfg=cfg, k=world.k, prompt_len=world.prompt_len, length_cap=cap)
        if not world.cfg.global_exploits:  # only then: the default gold's static arguments stay as they were
            self._static["global_exploits"] = False
        # centring constants from a corpus sample of the world
        crng = np.random.default_rng([world.cfg.seed, cfg.seed, _CALIB_STREAM])
        feats = self.features(*world.corpus(cfg.calib_samples, crng))
        teacher = np.asarray(feats["teacher_raw"], np.float64)
        self.consts["fluency_offset"] = jnp.float32(np.mean(np.asarray(feats["logprob"], np.float64)))
        self.consts["teacher_mean"] = jnp.float32(teacher.mean())
        self.consts["teacher_std"] = jnp.float32(teacher.std() + 1e-12)

    @property
    def component_names(self) -> tuple[str, ...]:
        """COMPONENTS, then bank0 .. bank{K-1} with a bank."""
        return COMPONENTS + tuple(f"bank{i}" for i in range(self.bank.k))

    def components(self, tokens, response_mask) -> dict:
        """Every named component (`component_names`) plus "score" = the weighted total. Each f32[B]."""
        return self._run(tokens, response_mask)[1]

    def score(self, tokens, response_mask):
        """The gold score f32[B] (weighted sum of the components)."""
        return self.components(tokens, response_mask)["score"]

    def features(self, tokens, response_mask) -> dict:
        """Raw features behind the components, f32[B] each: task, logprob (uncentred mean bigram
        log-prob), n_content, n_flatter, n_repeat, n_echo, teacher_raw (and n_bank<i> with a bank)."""
        return self._run(tokens, response_mask)[0]

    @property
    def weights(self) -> dict:
        """Component name -> its weight in the score (the bank's drawn per-feature weights included)."""
        return component_weights(self.cfg) | {f"bank{i}": float(w) for i, w in enumerate(self.bank.weights)}

    def terms(self, tokens, response_mask) -> dict:
        """The score and each component's weighted term w_c * component_c (they add up to the score). f32[B] each."""
        return weighted_terms(self.components(tokens, response_mask), self.weights)

    def scorer(self, centre: dict) -> tuple[GoldTerms, tuple]:
        """(fn, params) for compiled programs: `fn(params, tokens, mask)` is `terms` minus `centre` (name ->
        the value that becomes 0, e.g. the initial policy's mean), a pure function of its arrays `params`."""
        params = (self.consts, {k: jnp.float32(v) for k, v in centre.items()})
        return GoldTerms(**self._static), params

    def _run(self, tokens, mask):
        P, T = self.prompt_len, self.world.max_new
        traced = isinstance(tokens, jax.core.Tracer) or isinstance(mask, jax.core.Tracer)
        tokens, mask = (jnp if traced else np).asarray(tokens), (jnp if traced else np).asarray(mask)
        if tokens.ndim != 2 or mask.ndim != 2 or tokens.shape[0] != mask.shape[0]:
            raise ValueError(f"expected tokens [B, P+T] and mask [B, T], got {tokens.shape} and {mask.shape}")
        if tokens.shape[1] - P != mask.shape[1] or not 1 <= mask.shape[1] <= T:
            raise ValueError(f"tokens {tokens.shape}, mask {mask.shape} do not fit P={P}, max_new<={T}")
        B = tokens.shape[0]
        if traced or B == 0:
            return _compute(self.consts, tokens.astype(jnp.int32), mask.astype(bool), **self._static)
        idx = np.minimum(np.arange(_bucket(B)), B - 1)  # pad by repeating the last row
        out = _compute(self.consts, tokens[idx].astype(np.int32), mask[idx].astype(bool), **self._static)
        return jax.tree.map(lambda v: v[:B], out)


def component_weights(cfg: GoldConfig) -> dict:
    """Component name -> its weight in the score, for COMPONENTS (a bank's weights: `GoldRM.weights`)."""
    return {c: getattr(cfg, f"w_{c}") for c in COMPONENTS}


def weighted_terms(components: dict, weights: dict) -> dict:
    """The score and each component's weighted term w_c * component_c (the one definition of the terms)."""
    return {k: v if k == "score" else v * weights.get(k, 1.0) for k, v in components.items()}


@dataclass(frozen=True)
class GoldTerms:
    """The gold's weighted terms, recentred, as a pure function `(params, tokens, mask) -> dict of f32[B]`
    with params = (the GoldRM's arrays, centre). Compared by value: equal golds share compiled programs."""

    cfg: GoldConfig
    k: int
    prompt_len: int
    length_cap: int
    global_exploits: bool = True

    def __call__(self, params, tokens, mask):
        consts, centre = params
        _, comps = _compute(
            consts,
            tokens.astype(jnp.int32),
            mask.astype(bool),
            cfg=self.cfg,
            k=self.k,
            prompt_len=self.prompt_len,
            length_cap=self.length_cap,
            global_exploits=self.global_exploits,
        )
        weights = component_weights(self.cfg)
        if "bank_weight" in consts:  # the bank's weights are arrays of the gold, not part of its config
            weights |= {f"bank{i}": w for i, w in enumerate(consts["bank_weight"])}
        return {k: t - centre[k] for k, t in weighted_terms(comps, weights).items()}


def _bucket(n: int) -> int:
    return max(8, 1 << (n - 1).bit_length()) if n <= 8192 else -(-n // 8192) * 8192


@partial(jax.jit, static_argnames=("cfg", "k", "prompt_len", "length_cap", "global_exploits"))
def _compute(consts, tokens, mask, *, cfg: GoldConfig, k: int, prompt_len: int, length_cap: int, global_exploits=True):
    """(features, components) of a batch; see the module docstring (global_exploits False: no flattery term,
    FLATTER judged as content)."""
    P = prompt_len
    B, T = mask.shape
    V = consts["bigram"].shape[0]
    if "canon" in consts:  # a symbol's every form is the symbol (gold_rm.world's `variants`)
        tokens = consts["canon"][jnp.clip(tokens, 0, V - 1)]
    prompt, resp = tokens[:, :P], tokens[:, P:]
    syms = prompt[:, 2 : 2 + k]
    target = _targets(consts["perm_tokens"], prompt, k)
    marker = None
    if "bank_tokens" in consts:  # [B, T, K]: which response token is which bank marker
        marker = mask[:, :, None] & (resp[:, :, None] == consts["bank_tokens"][None, None, :])
    content, n_content = _strip(
        resp, mask, None if marker is None else marker.any(-1), keep_flatter=not global_exploits
    )
    n_flatter = jnp.sum(mask & (resp == FLATTER), axis=1)
    task = jnp.mean(content[:, :k] == target, axis=1)
    # adjacent equal content symbols (content is PAD past its length, so check both are content)
    pos = jnp.arange(1, T)
    n_repeat = jnp.sum((content[:, 1:] == content[:, :-1]) & (pos < n_content[:, None]), axis=1)
    n_echo = jnp.sum((content[:, :k] == syms) & (target != syms), axis=1)
    # fluency: the previous token of the first response token is the prompt's SEP
    prev, nxt = jnp.clip(tokens[:, P - 1 : P + T - 1], 0, V - 1), jnp.clip(resp, 0, V - 1)
    lp = jnp.where(mask, consts["bigram"][prev, nxt], 0.0)
    logprob = lp.sum(1) / jnp.maximum(mask.sum(1), 1)
    teacher_raw = _teacher(consts["teacher_w1"], consts["teacher_w2"], tokens, mask, P)
    f32 = jnp.float32
    feats = {
        "task": task.astype(f32),
        "logprob": logprob.astype(f32),
        "n_content": n_content.astype(f32),
        "n_flatter": n_flatter.astype(f32),
        "n_repeat": n_repeat.astype(f32),
        "n_echo": n_echo.astype(f32),
        "teacher_raw": teacher_raw.astype(f32),
    }
    comps = {
        "task": feats["task"],
        "fluency": feats["logprob"] - consts["fluency_offset"],
        "length": concave(feats["n_content"], length_cap, cfg.length_slope),
        "flattery": concave(feats["n_flatter"], cfg.flattery_cap, cfg.flattery_slope)
        if global_exploits
        else jnp.zeros(B, f32),
        "repetition": concave(feats["n_repeat"], cfg.repetition_cap, cfg.repetition_slope),
        "echo": concave(feats["n_echo"], cfg.echo_cap, cfg.echo_slope),
        "teacher": (feats["teacher_raw"] - consts["teacher_mean"]) / consts["teacher_std"],
    }
    comps = {name: v.astype(f32) for name, v in comps.items()}
    comps["score"] = sum(getattr(cfg, f"w_{c}") * comps[c] for c in COMPONENTS).astype(f32)
    if marker is not None:
        counts = marker.sum(1).astype(f32)  # [B, K]
        shapes = concave(counts, consts["bank_cap"][None, :], consts["bank_slope"][None, :]).astype(f32)
        for i in range(counts.shape[1]):
            feats[f"n_bank{i}"] = counts[:, i]
            comps[f"bank{i}"] = shapes[:, i]
        comps["score"] = (comps["score"] + shapes @ consts["bank_weight"]).astype(f32)
    return feats, comps


def _bank_consts(bank: BankParams, token0: int) -> dict:
    """The bank's arrays for the computation: marker token ids, caps, slopes and weights."""
    return {
        "bank_tokens": jnp.asarray(token0 + np.arange(bank.k), jnp.int32),
        "bank_cap": jnp.asarray(bank.caps, jnp.float32),
        "bank_slope": jnp.asarray(bank.slopes, jnp.float32),
        "bank_weight": jnp.asarray(bank.weights, jnp.float32),
    }


def _targets(perm_tokens, prompt, k):
    """Target token ids int32[B, k] of each prompt, selected by its task token."""
    syms = prompt[:, 2 : 2 + k]
    cases = {
        "copy": syms,
        "reverse": syms[:, ::-1],
        "sort": jnp.sort(syms, axis=1),
        "map": perm_tokens[jnp.clip(syms - SYMBOL0, 0, perm_tokens.shape[0] - 1)],
    }
    stacked = jnp.stack([cases[name] for name in ALL_TASKS], axis=1)  # [B, n_tasks, k]
    task = jnp.clip(prompt[:, 1] - TASK0, 0, len(ALL_TASKS) - 1)
    return jnp.take_along_axis(stacked, task[:, None, None], axis=1)[:, 0]


def _teacher(w1, w2, tokens, mask, prompt_len):
    """Random MLP over one-hot (position, token) of the prompt and the masked response."""
    S = tokens.shape[1]
    valid = jnp.concatenate([jnp.ones((tokens.shape[0], prompt_len), bool), mask], axis=1)
    emb = w1[jnp.arange(S)[None, :], jnp.clip(tokens, 0, w1.shape[1] - 1)]  # [B, S, H]
    return jnp.tanh(jnp.sum(emb * valid[..., None], axis=1)) @ w2


def _strip(resp, mask, drop=None, keep_flatter=False):
    """Response content without FLATTER (unless keep_flatter), EOS (and where `drop`: bank markers), left-aligned,
    PAD-filled. Returns (int32[B, T], int[B])."""
    B, T = resp.shape
    keep = mask & (resp != EOS)
    if not keep_flatter:
        keep = keep & (resp != FLATTER)
    if drop is not None:
        keep = keep & ~drop
    dest = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, T)  # dropped tokens go to a dump column
    out = jnp.full((B, T + 1), PAD, resp.dtype).at[jnp.arange(B)[:, None], dest].set(resp)
    return out[:, :T], keep.sum(1)


def describe(world: World, gold: GoldRM, n: int = 4096, rng: np.random.Generator | None = None) -> dict:
    """Means and standard deviations of every component and raw feature on a corpus sample.

    Returns {name: {"mean": float, "std": float}}; raw features are named "feature/<name>".
    """
    rng = np.random.default_rng(0) if rng is None else rng
    tokens, mask = world.corpus(n, rng)
    comps, feats = gold.components(tokens, mask), gold.features(tokens, mask)
    out = {}
    for prefix, d in (("", comps), ("feature/", feats)):
        for name, v in d.items():
            v = np.asarray(v, np.float64)
            out[prefix + name] = {"mean": float(v.mean()), "std": float(v.std())}
    return out


def validate(cfg: GoldConfig) -> None:
    for name in ("flattery_cap", "repetition_cap", "echo_cap"):
        if getattr(cfg, name) < 1:
            raise UsageError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.length_cap < 0:
        raise UsageError(f"length_cap must be >= 0 (0: the target length), got {cfg.length_cap}")
    for name in ("length_slope", "flattery_slope", "repetition_slope", "echo_slope"):
        if getattr(cfg, name) < 0:
            raise UsageError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.fluency_smoothing <= 0:
        raise UsageError(f"fluency_smoothing must be positive, got {cfg.fluency_smoothing}")
    if cfg.fluency_samples < 1 or cfg.calib_samples < 2 or cfg.teacher_hidden < 1:
        raise UsageError("fluency_samples, calib_samples and teacher_hidden must be positive")
    if cfg.kind not in ("formula", "learned"):
        raise UsageError(f"kind must be 'formula' or 'learned', got {cfg.kind!r}")
    validate_learned(cfg.learned)
    validate_gold(
        cfg.bank_cap_min, cfg.bank_cap_max, cfg.bank_slope_min, cfg.bank_slope_max, cfg.bank_weight_ratio, cfg.w_bank
    )
