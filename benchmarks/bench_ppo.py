"""Benchmark: one PPO update against a proxy reward model, updates per second.

ours: `rl.ppo.make_ppo(...).chunk`: a `lax.scan` of `eval_every` updates in one jitted program,
each update = KV-cache rollout, policy/value and reference log-probs, proxy score, per-token KL
reward, GAE (reverse scan), whitened advantages, `epochs` x `minibatches` clipped policy/value
steps with Adam and global-norm clipping.
peer: the same recipe written in PyTorch in this file (`TorchPPO`), not TRL. Why: TRL is not
installed on this machine (the `bench` extra lists it for users), and TRL's `PPOTrainer` does not
offer a single update on token arrays: it drives its own loop over a text dataset with a tokenizer,
a separate value model and a sequence-classification reward model, so neither the model layout nor
the step would match. The peer follows TRL's / lm-human-preferences' step as a user would write it:
rollout with Hugging Face `generate` (KV cache, sampling), policy log-probs and values (value head
on the shared trunk, as ours), frozen reference log-probs, reward-model score at the last response
token, KL penalty per token, GAE as a reverse Python loop (as TRL does), whitening, then the clipped
losses over epochs x minibatches with `torch.optim.Adam` and `clip_grad_norm_`, eager mode.

Identical: policy and reward-model sizes, vocabulary, prompt and response lengths, batch, epochs,
minibatches, hyperparameters (parameter counts checked equal). Updates per second = updates in a
timed call / median seconds.
"""

from __future__ import annotations

import copy
import functools

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from benchmarks.common import MAX_NEW, MIDDLE_PROXY, PROMPT_LEN, SHRUNK, TINY_POLICY


@functools.cache
def ppo_config(quick: bool):
    """The PPO settings every PPO row uses (Gao's clip and lambda; 4 epochs x 4 minibatches)."""
    from rl.ppo_config import PPOConfig

    e = common.pick(quick, 4, 2, 1)  # updates per timed call
    batch, t, epochs, mb = common.pick(quick, (64, MAX_NEW, 4, 4), (64, MAX_NEW, 4, 4), (4, 4, 1, 2))
    return PPOConfig(
        batch_size=batch,
        max_new=t,
        epochs=epochs,
        minibatches=mb,
        eval_every=e,
        eval_batch=batch,
        updates=e,
        lr=1e-5,
        kl_coef=0.05,
        fast_compile=common.scale(quick) == "tiny",
    )


def sizes(quick: bool) -> tuple[common.Arch, common.Arch]:
    """(policy, reward model) sizes."""
    return common.pick(quick, (TINY_POLICY, MIDDLE_PROXY), (TINY_POLICY, MIDDLE_PROXY), (SHRUNK, SHRUNK))


def zero_gold(params, tokens, mask):
    """The benchmark's gold: evaluation only, no update reads it."""
    del params, mask
    return {"score": jnp.zeros(tokens.shape[0])}


@functools.cache
def setup(quick: bool):
    """Our compiled PPO programs and their inputs (cached: the grid and ceiling rows reuse them).

    Returns a dict: fns (PPOFns), cfg, policy_graphdef, policy_state (one value-headed policy),
    ref_state, bank, rm (graphdef, state), pre (graphdef, state of the initial policy), and
    scorer_params (reward params, gold params): the trailing arguments of fns.chunk / fns.evaluate.
    """
    from lm import model as gpt
    from proxy_rm.train import ProxyReward
    from rl.ppo import Scorer, init_policies, make_ppo

    cfg = ppo_config(quick)
    policy_arch, rm_arch = sizes(quick)
    pre = gpt.init(common.model_config(policy_arch), 0)
    rm = gpt.init(common.model_config(rm_arch), 1, lm_head=False, scalar_head=True)
    # the proxy RM's score at the last response token (an ensemble of one member, offset 0), as the study runs it
    members = jax.tree.map(lambda x: x[None], rm[1])
    reward = Scorer(ProxyReward(rm[0], PROMPT_LEN, "last"), (members, jnp.zeros(1, jnp.float32)))
    gold = Scorer(zero_gold, ())
    pg, stacked = init_policies(pre[0], pre[1], [0])
    fns = make_ppo(pg, pre[0], reward.fn, gold.fn, cfg.static(), PROMPT_LEN)
    bank = jnp.asarray(common.prompts(256, np.random.default_rng(2)))
    return {
        "fns": fns,
        "cfg": cfg,
        "policy_graphdef": pg,
        "policy_state": jax.tree.map(lambda x: x[0], stacked),
        "ref_state": pre[1],
        "bank": bank,
        "rm": rm,
        "pre": pre,
        "scorer_params": (reward.params, gold.params),
    }


def ours_call(quick: bool):
    """A blocking call running `eval_every` of our PPO updates (the runner carried across calls)."""
    s = setup(quick)
    cfg, fns = s["cfg"], s["fns"]
    hyper = cfg.hyper()
    runner = [fns.init(s["policy_state"], hyper, jnp.int32(0))]

    def call():
        runner[0], metrics = fns.chunk(runner[0], hyper, s["ref_state"], s["bank"], *s["scorer_params"])
        if not bool(np.all(np.asarray(metrics["loss/finite"]))):
            raise RuntimeError("ours: non-finite PPO loss in the benchmark")

    return call


class TorchPPO:
    """The PPO update of rl.ppo written in PyTorch (see the module doc): `update()` runs one."""

    def __init__(self, policy_arch: common.Arch, rm_arch: common.Arch, cfg, bank: np.ndarray):
        torch = common.torch_setup()
        from transformers import GPT2LMHeadModel, GPT2Model

        from lm.model import FORBIDDEN, param_count

        self.torch, self.cfg = torch, cfg
        self.forbidden = torch.zeros(common.VOCAB, dtype=torch.bool)
        self.forbidden[list(FORBIDDEN)] = True
        self.lm = GPT2LMHeadModel(common.gpt2_config(policy_arch))
        self.value = torch.nn.Linear(policy_arch.d_model, 1)
        self.policy = torch.nn.ModuleDict({"lm": self.lm, "value": self.value}).train()
        common.check_same_size(param_count(common.model_config(policy_arch), scalar_head=True), self.policy)
        self.ref = copy.deepcopy(self.lm).eval().requires_grad_(False)
        self.rm_trunk = GPT2Model(common.gpt2_config(rm_arch)).eval().requires_grad_(False)
        self.rm_head = torch.nn.Linear(rm_arch.d_model, 1).requires_grad_(False)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        self.bank = torch.as_tensor(np.array(bank), dtype=torch.long)
        self.gen = torch.Generator().manual_seed(0)

    def outputs(self, lm, tokens, mask, value=True):
        """Response log-probs, values and entropies f32[B, T] (values None without `value`)."""
        torch, P = self.torch, PROMPT_LEN
        h = lm.transformer(input_ids=tokens[:, :-1]).last_hidden_state[:, P - 1 :]
        logits = (lm.lm_head(h) / self.cfg.temperature).masked_fill(self.forbidden, -float("inf"))
        logp_all = torch.log_softmax(logits, -1)
        lp = logp_all.gather(-1, tokens[:, P:, None])[..., 0]
        finite = torch.where(torch.isinf(logp_all), torch.zeros_like(logp_all), logp_all)
        ent = -(logp_all.exp() * finite).sum(-1)
        v = self.value(h)[..., 0] if value else None
        return torch.where(mask, lp, torch.zeros_like(lp)), v, ent

    def rollout(self, prompts):
        """Sampled tokens int64[B, P+T] (PAD after EOS) and the response mask (up to and including EOS)."""
        from core.tokens import BOS, EOS, PAD, SEP

        torch, T = self.torch, self.cfg.max_new
        seq = self.lm.generate(
            input_ids=prompts,
            attention_mask=torch.ones_like(prompts),
            do_sample=True,
            use_cache=True,
            max_new_tokens=T,
            top_k=0,
            top_p=1.0,
            temperature=self.cfg.temperature,
            suppress_tokens=[PAD, BOS, SEP],
            eos_token_id=EOS,
            pad_token_id=PAD,
        )
        if seq.shape[1] < PROMPT_LEN + T:  # every row ended early
            seq = torch.nn.functional.pad(seq, (0, PROMPT_LEN + T - seq.shape[1]), value=PAD)
        resp = seq[:, PROMPT_LEN:]
        is_eos = (resp == EOS).long()
        return seq, (torch.cumsum(is_eos, 1) - is_eos) == 0

    def gae(self, rewards, values, m):
        """GAE with V = A = 0 past the end, as a reverse loop over response positions."""
        c = self.cfg
        adv = self.torch.zeros_like(rewards)
        nxt_v = nxt_a = self.torch.zeros_like(rewards[:, 0])
        for t in reversed(range(rewards.shape[1])):
            delta = rewards[:, t] + c.gamma * nxt_v - values[:, t]
            adv[:, t] = (delta + c.gamma * c.lam * nxt_a) * m[:, t]
            nxt_v, nxt_a = values[:, t], adv[:, t]
        return adv, (adv + values) * m

    def update(self):
        torch, c = self.torch, self.cfg
        B, T = c.batch_size, c.max_new
        with torch.no_grad():
            prompts = self.bank[torch.randint(0, self.bank.shape[0], (B,), generator=self.gen)]
            tokens, mask = self.rollout(prompts)
            m = mask.float()
            logp, values, _ = self.outputs(self.lm, tokens, mask)
            logp_ref, _, _ = self.outputs(self.ref, tokens, mask, value=False)
            last = (PROMPT_LEN + mask.sum(1) - 1).clamp(min=PROMPT_LEN - 1)
            score = self.rm_head(self.rm_trunk(input_ids=tokens).last_hidden_state[torch.arange(B), last])[:, 0]
            at_last = torch.nn.functional.one_hot(mask.sum(1) - 1, T)
            rewards = score[:, None] * at_last - c.kl_coef * (logp - logp_ref) * m
            values = values * m
            adv, ret = self.gae(rewards, values, m)
            mean = (adv * m).sum() / m.sum()
            var = (((adv - mean) ** 2) * m).sum() / m.sum()
            adv = (adv - mean) * torch.rsqrt(var + 1e-8) * m
        for _ in range(c.epochs):
            for idx in torch.randperm(B, generator=self.gen).view(c.minibatches, -1):
                mm = m[idx]
                lp, v, ent = self.outputs(self.lm, tokens[idx], mask[idx])
                ratio = torch.exp(lp - logp[idx])
                pg = torch.maximum(-adv[idx] * ratio, -adv[idx] * ratio.clamp(1 - c.clip, 1 + c.clip))
                v_old = values[idx]
                v_clip = v_old + (v - v_old).clamp(-c.vf_clip, c.vf_clip)
                vf = torch.maximum((v - ret[idx]) ** 2, (v_clip - ret[idx]) ** 2)
                n = mm.sum().clamp(min=1.0)
                loss = ((pg * mm).sum() + c.vf_coef * 0.5 * (vf * mm).sum() - c.ent_coef * (ent * mm).sum()) / n
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.grad_clip)
                self.opt.step()
        return float(loss.detach())


def peer_call(quick: bool):
    """A call running `eval_every` updates of the PyTorch peer."""
    s = setup(quick)
    policy_arch, rm_arch = sizes(quick)
    ppo = TorchPPO(policy_arch, rm_arch, s["cfg"], np.asarray(s["bank"]))

    def call():
        for _ in range(s["cfg"].eval_every):
            if not np.isfinite(ppo.update()):
                raise RuntimeError("peer: non-finite PPO loss in the benchmark")

    return call


def rows(quick: bool) -> list[dict]:
    """One row: PPO updates per second, ours and the PyTorch peer."""
    repeat = common.pick(quick, 5, 3, 1)
    cfg = ppo_config(quick)
    policy_arch, rm_arch = sizes(quick)
    ours, peer = common.median_seconds(ours_call(quick), peer_call(quick), repeat=repeat)
    n = cfg.eval_every
    return [
        common.row(
            f"PPO update {policy_arch.label()} B={cfg.batch_size}",
            n / ours,
            n / peer,
            "updates/s",
            f"RM {rm_arch.label()}, V={common.VOCAB} P={PROMPT_LEN} T={cfg.max_new}, {cfg.epochs} epochs x "
            f"{cfg.minibatches} minibatches; peer: PPO step in PyTorch + HF generate (TRL not installed)",
        )
    ]


if __name__ == "__main__":
    import sys

    for r in rows("--quick" in sys.argv):
        print(r)
