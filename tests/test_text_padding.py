"""Variable-length prompts in the text world's compiled programs (issue 34): a prompt left-padded by 3 tokens
gives the same PPO rollout, log-probs, values, rewards and loss terms, and the same reward-model training and
scores, as the same prompt unpadded (fp32, within 1e-5). The padding is never attended to and the position ids
count from each prompt's first token (`lm.model.GPT.trunk`'s offset), for learned (GPT-2) and rotary (Llama)
positions alike. And the text study's PPO policies exported as Hugging Face checkpoints: loaded back (by `lm.hf` and
by transformers) they give the trained policy's logits."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from lm.hf import load, tiny  # noqa: E402
from lm.model import abstract, forward, response_logprobs  # noqa: E402
from lm.reward_train import Comparisons, score, train_ensemble  # noqa: E402
from lm.sampling import PaddedBank  # noqa: E402
from lm.scorer import HostGold, Scorer  # noqa: E402
from proxy_rm.train import ProxyReward, ProxyTrainConfig  # noqa: E402
from rl.ppo import PPO  # noqa: E402
from rl.ppo_config import PPOConfig  # noqa: E402
from rl.runner import train_grid  # noqa: E402
from study.stages.text_train import BeforeEos, export_policies  # noqa: E402

PAD = 3  # left-padding width of the padded copy
PROMPTS = ([17, 40, 23, 9, 61], [88, 5, 130])  # tiny-tokenizer ids (0 is EOS = PAD)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("pad")
    tok = tiny.tokenizer(d / "tok")
    return {
        "gpt2": tiny.model(d / "gpt2", "gpt2", seed=1, tokenizer_from=tok),
        "llama": tiny.model(d / "llama", "llama", seed=2, tokenizer_from=tok),
        "rm": tiny.model(d / "rm", "llama", seed=3, tokenizer_from=tok, width=16, heads=2),
    }


def _policy(path):
    imp = load(path)
    cfg = dataclasses.replace(imp.cfg, eos_id=0, pad_id=0, forbidden=())
    return abstract(cfg)[0], imp.state


def _proxy(path):
    imp = load(path, role="reward", seed=4)
    cfg = dataclasses.replace(imp.cfg, eos_id=0, pad_id=0, forbidden=())
    graphdef, _ = abstract(cfg, lm_head=False, scalar_head=True)
    return graphdef, jax.tree.map(lambda x: x[None], imp.state)


def _banks(prompt):
    """(the prompt alone int32[1, L], the prompt left-padded by PAD tokens as a PaddedBank)."""
    plain = np.asarray([prompt], np.int32)
    padded = np.concatenate([np.zeros((1, PAD), np.int32), plain], axis=1)
    return plain, PaddedBank(padded, np.asarray([PAD], np.int32))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_ppo_on_a_padded_prompt_equals_the_unpadded_prompt(models, family):
    """One PPO update and an evaluation from the same seed: the padded bank samples the same responses, and its
    log-probs (policy and reference), KL, values, proxy reward, loss terms and updated weights equal the
    unpadded bank's."""
    graphdef, state = _policy(models[family])
    rm_graph, rm_states = _proxy(models["rm"])
    # one minibatch: the loss terms are the rollout's; adam_eps 1: the update is proportional to the gradient
    cfg = PPOConfig(
        batch_size=8, max_new=6, epochs=1, minibatches=1, eval_every=1, eval_batch=8, updates=1, lr=5e-2,
        adam_eps=1.0, kl_coef=0.1, ent_coef=0.01,
    )  # fmt: skip
    pg, stacked = PPO.init_policies(graphdef, state, [0])
    start = jax.tree.map(lambda x: x[0], stacked)
    h = cfg.hyper()
    outs = []
    for bank in _banks(PROMPTS[0]):
        p = bank.shape[1]
        reward = Scorer(BeforeEos(ProxyReward(rm_graph, p, "last"), 0), (rm_states, jnp.zeros(1)))
        fns = PPO.make(pg, graphdef, reward.fn, HostGold(), cfg.static(), p)
        ev, tokens, mask = fns.evaluate(start, h, 0, jnp.int32(0), state, bank, reward.params, ())
        runner, metrics = fns.chunk(fns.init(start, h, 0), h, state, bank, reward.params, ())
        outs.append((ev, np.asarray(tokens)[:, p:], np.asarray(mask), metrics, runner.params))
    (ev0, r0, m0, met0, w0), (ev3, r3, m3, met3, w3) = outs
    np.testing.assert_array_equal(r0, r3)  # the same responses
    np.testing.assert_array_equal(m0, m3)
    assert m0.sum(axis=1).min() >= 2  # not all empty: something to compare
    for name in ev0:
        np.testing.assert_allclose(float(ev3[name]), float(ev0[name]), atol=1e-5, err_msg=name)
    assert abs(float(ev0["proxy/score"])) > 1e-3
    terms = ("loss/policy_avg", "loss/value_avg", "loss/total", "policy/entropy_avg", "policy/approxkl_avg")
    for name in (*terms, "objective/kl", "objective/kl_k3", "objective/scores", "objective/entropy"):
        np.testing.assert_allclose(np.asarray(met3[name]), np.asarray(met0[name]), atol=1e-5, err_msg=name)
    assert abs(float(met0["loss/value_avg"][0])) > 1e-4
    for a, b in zip(jax.tree.leaves(w0), jax.tree.leaves(w3), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5)
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(w0), jax.tree.leaves(start)))
    assert moved > 1e-3  # the update did something


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_logprobs_and_proxy_scores_ignore_the_left_padding(models, family):
    """A mixed batch (two prompt lengths, the shorter left-padded): each row's log-probs and proxy scores (every
    pooling) equal that row's own, unpadded."""
    graphdef, state = _policy(models[family])
    rm_graph, rm_states = _proxy(models["rm"])
    resp = np.asarray([[7, 12, 30, 0, 0], [44, 45, 46, 47, 48]], np.int32)
    mask = np.asarray([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    width = max(map(len, PROMPTS)) + PAD
    offsets = np.asarray([width - len(q) for q in PROMPTS], np.int32)
    padded = np.stack([np.concatenate([np.zeros(o, np.int32), q]) for o, q in zip(offsets, PROMPTS)])
    batch = np.concatenate([padded, resp], axis=1)
    lp = np.asarray(response_logprobs(graphdef, state, batch, width, offset=offsets))
    last = score(rm_graph, rm_states, batch, mask, width, offsets=offsets)[0]
    for pool in ("last", "sum", "mean"):
        got = score(rm_graph, rm_states, batch, mask, width, pool=pool, offsets=offsets)[0]
        for i, q in enumerate(PROMPTS):
            own = np.asarray([list(q) + resp[i].tolist()], np.int32)
            want = score(rm_graph, rm_states, own, mask[i : i + 1], len(q), pool=pool)[0, 0]
            assert abs(got[i] - want) < 1e-5, (pool, i)
            if pool == "last":
                mine = response_logprobs(graphdef, state, own, len(q))[0]
                np.testing.assert_allclose(lp[i], np.asarray(mine), atol=1e-5)
    # without the offsets the padding is read: the padded row's score and log-probs move (the checks can fail)
    assert abs(score(rm_graph, rm_states, batch, mask, width)[0, 1] - last[1]) > 1e-4
    assert np.abs(np.asarray(response_logprobs(graphdef, state, batch, width))[1] - lp[1]).max() > 1e-4


def test_reward_model_training_on_padded_prompts_equals_unpadded(models):
    """Bradley-Terry training (`train_ensemble`) on comparisons whose prompts are left-padded by 3 tokens, with
    their offsets, gives the unpadded training's losses, accuracies and scores."""
    rng = np.random.default_rng(0)
    n, t = 32, 5
    prompts = rng.integers(1, tiny.VOCAB, (n, 4)).astype(np.int32)
    resp_a, resp_b = (rng.integers(1, tiny.VOCAB, (n, t)).astype(np.int32) for _ in range(2))
    lens_a, lens_b = rng.integers(1, t + 1, n), rng.integers(1, t + 1, n)
    mask_a, mask_b = (np.arange(t)[None, :] < ln[:, None] for ln in (lens_a, lens_b))
    label = rng.integers(0, 2, n).astype(np.int8)
    pad = np.zeros((n, PAD), np.int32)
    plain = Comparisons(
        np.concatenate([prompts, resp_a], 1), mask_a, np.concatenate([prompts, resp_b], 1), mask_b, label, 4
    )
    offs = np.full(n, PAD, np.int32)
    padded = Comparisons(
        np.concatenate([pad, prompts, resp_a], 1), mask_a, np.concatenate([pad, prompts, resp_b], 1), mask_b, label,
        4 + PAD, offsets_a=offs, offsets_b=offs,
    )  # fmt: skip
    assert len(padded.take(np.arange(5)).offsets_a) == 5
    imp = load(models["rm"], role="policy")
    mcfg = dataclasses.replace(imp.cfg, eos_id=0, pad_id=0, forbidden=())
    tcfg = ProxyTrainConfig(epochs=2, batch_size=8, lr=3e-3, val_frac=0.25)
    runs = []
    for data in (plain, padded):
        tr, va = data.split(tcfg.val_frac, 0)
        g, st, hist = train_ensemble(mcfg, tcfg, tr, va, [5], imp.state)
        s = score(g, st, data.tokens_a, data.mask_a, data.prompt_len, offsets=data.offsets_a)
        runs.append((hist, s))
    (h0, s0), (h3, s3) = runs
    for a, b in zip(h0, h3, strict=True):
        for k in ("train/loss", "train/acc", "val/loss", "val/acc"):
            np.testing.assert_allclose(b[k], a[k], atol=1e-5, err_msg=k)
    np.testing.assert_allclose(s3, s0, atol=1e-5)
    assert h0[-1]["train/loss"][0] != h0[0]["train/loss"][0]  # it trained


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_ppo_policies_export_as_hugging_face_checkpoints_that_load_back(models, family, tmp_path):
    """`export_policies` (the text study's PPO stage): each grid point's trained policy, written as a causal LM
    with the policy's tokenizer, loads back through `lm.hf.load` with the trained logits (1e-5) and through
    transformers (1e-4), and is not the initial policy. gpt2: tied embeddings; llama: an untied LM head."""
    T = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    graphdef, state = _policy(models[family])
    rm_graph, rm_states = _proxy(models["rm"])
    bank = _banks(PROMPTS[0])[1]
    reward = Scorer(BeforeEos(ProxyReward(rm_graph, bank.shape[1], "last"), 0), (rm_states, jnp.zeros(1)))
    cfg = PPOConfig(batch_size=8, max_new=6, epochs=1, minibatches=1, eval_every=2, eval_batch=8, updates=2, lr=1e-2)
    results = train_grid((graphdef, state), reward, Scorer(HostGold(), ()), bank, cfg, [(0.0, 0), (0.1, 1)])
    listed = export_policies(tmp_path, results, models[family])
    assert listed == {"kl0-seed0": "hf/kl0-seed0", "kl0.1-seed1": "hf/kl0.1-seed1"}
    probe = np.asarray([[17, 40, 23, 9, 61, 7, 12, 30, 88, 5]], np.int32)
    initial = np.asarray(forward(graphdef, state, probe)[0])
    for r in results:
        out = tmp_path / listed[f"kl{r['kl_coef']:g}-seed{r['seed']}"]
        trained = np.asarray(forward(r["graphdef"], r["state"], probe)[0])
        assert np.abs(trained - initial).max() > 1e-3  # PPO moved it: the export holds the trained weights
        back = load(out)
        np.testing.assert_allclose(np.asarray(forward(back.graphdef, back.state, probe)[0]), trained, atol=1e-5)
        with torch.no_grad():
            hf = T.AutoModelForCausalLM.from_pretrained(str(out)).eval()(torch.as_tensor(probe, dtype=torch.long))
        np.testing.assert_allclose(hf.logits.numpy(), trained, atol=1e-4)
        assert (
            T.AutoTokenizer.from_pretrained(str(out)).get_vocab()
            == T.AutoTokenizer.from_pretrained(str(models[family])).get_vocab()
        )
