"""The text study on its declared stage graph (issue 34): keys from exactly each stage's reads, a killed study
resumed to the same numbers, replicates, proxies that must share the policy's tokenizer (refused up front),
and PAD/EOS and left padding giving the same log-probs and rewards as each row computed alone."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
T = pytest.importorskip("transformers")

from lm.hf import load, tiny  # noqa: E402
from lm.hf.tokenizer import encode, left_padded, load_tokenizer, special_ids, with_token_ids  # noqa: E402
from lm.model import abstract, forward, response_logprobs, response_valid  # noqa: E402
from lm.reward_train import score  # noqa: E402
from overopt.cli import main  # noqa: E402
from proxy_rm.train import ProxyReward  # noqa: E402
from study.stages.graph import DeclaredView, Slot, Stage, UndeclaredRead, downstream, instantiate, readers  # noqa: E402
from study.stages.text import TEXT_FINISH, TEXT_SELECTORS, text_plan  # noqa: E402
from study.stages.text_models import check_tokenizers  # noqa: E402
from study.stages.text_train import BeforeEos, before_eos  # noqa: E402
from study.text_config import resolve_text  # noqa: E402
from study.text_study import TextStudy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MICRO = [
    "n_comparisons=48", "pool=4", "bon_prompts=4", "backbones=['tiny:gpt2:16']", "train.epochs=1",
    "ppo.updates=10", "ppo.eval_every=5", "ppo.batch_size=8", "ppo.eval_batch=8", "ppo.bleu_sample=8", "seeds=[0,1]",
]  # fmt: skip


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def _leaves(cfg, prefix=""):
    """(dotted path, value) of every leaf of the text config, each backbone on its own ("backbones[1]")."""
    for f in dataclasses.fields(cfg):
        v, path = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            yield from _leaves(v, path + ".")
        elif f.name == "backbones":
            yield from ((f"backbones[{i}]", b) for i, b in enumerate(v))
        else:
            yield path, v


def _changed(v):
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v * 1.5 + 0.25
    if isinstance(v, str):
        return v + "9" if v.startswith("tiny:") else v + "z"
    if v is None:
        return 1.0
    if isinstance(v, tuple):
        return (_changed(v[0]),) + v[1:] if v else (1.0,)
    raise AssertionError(v)


def _set(cfg, path, value):
    head, _, rest = path.partition(".")
    if "[" in head:
        name, i = head[: head.index("[")], int(head[head.index("[") + 1 : -1])
        cur = getattr(cfg, name)
        new = cur[:i] + (value,) + cur[i + 1 :]
    else:
        name, new = head, (_set(getattr(cfg, head), rest, value) if rest else value)
    out = copy.copy(cfg)
    object.__setattr__(out, name, new)
    return out


def test_text_stage_ids_change_exactly_with_what_each_stage_reads(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("one prompt here\nanother prompt there\n")
    base_cfg = resolve_text("text-tiny", [])
    base_plan = text_plan(base_cfg)
    base = {i.label: i.id for i in base_plan}
    assert len(base) == len(set(base.values())) == 5 + 3 + 3 * 3  # 5 models; prompts, labels, pool; 3 per backbone
    checked = 0
    for path, value in _leaves(base_cfg):
        new_value = str(prompts) if path == "prompts" else _changed(value)
        new_plan = text_plan(_set(base_cfg, path, new_value))
        new = {i.label: i.id for i in new_plan}
        common = base.keys() & new.keys()
        changed = {k for k in common if base[k] != new[k]}
        reads = (
            readers(new_plan, "seed") | readers(new_plan, "seeds") if path == "replicate" else readers(new_plan, path)
        )
        assert changed == downstream(new_plan, reads) & common, (path, sorted(changed))
        if path in TEXT_SELECTORS:
            assert not changed and new.keys() < base.keys(), path  # rl_enabled off: no ppo instances
        elif path in TEXT_FINISH or path == "ppo.kl_coef":  # the grid sets each point's kl_coef
            assert not changed or path == "replicate", path
        else:
            assert reads, f"{path}: read by no stage"
        checked += bool(changed)
    assert checked > 30
    # a checkpoint changed on disk changes the ids of what reads it (its sha256 is in the key)
    ck = tiny.model(tmp_path / "bb", "gpt2", width=16, heads=2)
    cfg = resolve_text("text-tiny", [f"backbones=['hf:{ck}']"])
    before = {i.label: i.id for i in text_plan(cfg)}
    (ck / "config.json").write_text((ck / "config.json").read_text() + " ")
    after = {i.label: i.id for i in text_plan(cfg)}
    assert {k for k in before if before[k] != after[k]} == {"model:backbone[0]", "proxy[0]", "bon[0]", "ppo[0]"}


@pytest.mark.slow
def test_text_study_killed_resumes_to_the_same_numbers_and_replicates_differ(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["study", "--preset", "text-tiny", "--out", str(a), "--no-progress", *_sets(MICRO)]) == 0
    info = json.loads((a / "study.json").read_text())
    points = pd.read_parquet(a / "points.parquet")
    rl = points[points["method"] == "rl"]
    assert sorted(rl["step"]) == [0, 0, 5, 5, 10, 10] and sorted(rl["seed"]) == [0, 0, 0, 1, 1, 1]
    assert info["gold_cost"]["rows"] == 2 * 48 + 4 * 4 + 3 * 2 * 8  # labels, the pool, 3 evaluations of 2 seeds
    assert rl["gold"].notna().all() and (rl["gold"] != 0).any()  # the gold outside the program scored them
    proxies = pd.read_parquet(a / "proxies.parquet")
    assert len(proxies) == 1 and (Path(proxies["hf"][0]) / "config.json").is_file()  # the exported proxy
    (ppo_run,) = (a / "runs").glob("text-ppo-0-*")  # each PPO policy exported next to its points
    listed = json.loads((ppo_run / "policies.json").read_text())
    assert sorted(listed) == ["kl0-seed0", "kl0-seed1"] and all(
        load(ppo_run / d).family == "gpt2" for d in listed.values()
    )
    with np.load(next((a / "runs").glob("text-prompts-*")) / "bank.npz") as z:  # the built-in prompts: some padded
        assert z["offsets"].max() > 0 and z["offsets"].min() == 0 and info["prompts_truncated"] > 0

    # the same study in b, killed (SIGKILL) once its proxy is DONE, during PPO; then resumed
    cmd = [sys.executable, "-m", "overopt", "study", "--preset", "text-tiny", "--out", str(b), "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([*cmd, *_sets(MICRO)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not list((b / "runs").glob("text-bon-0-*/DONE")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    assert not (b / "points.parquet").exists() and not list((b / "runs").glob("text-ppo-0-*/DONE"))
    done = {p.parent.name: p.stat().st_mtime_ns for p in (b / "runs").glob("*/DONE")}
    assert any(k.startswith("text-proxy-0-") for k in done)
    capsys.readouterr()
    assert main(["study", "--preset", "text-tiny", "--out", str(b), "--no-progress", "--resume", *_sets(MICRO)]) == 0
    assert {p.parent.name: p.stat().st_mtime_ns for p in (b / "runs").glob("*/DONE") if p.parent.name in done} == done
    pd.testing.assert_frame_equal(pd.read_parquet(b / "points.parquet"), points)  # the same numbers
    assert json.loads((b / "study.json").read_text())["gold_cost"]["rows"] == info["gold_cost"]["rows"]
    # a study run again finds everything DONE and changes nothing
    assert main(["study", "--preset", "text-tiny", "--out", str(b), "--no-progress", *_sets(MICRO)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(b / "points.parquet"), points)

    # replicates: the same checkpoints and prompts, other samples; the same replicate twice, the same samples
    def pool(replicate, out):
        study = TextStudy(resolve_text("text-tiny", [*MICRO, f"replicate={replicate}"]), out, progress=False)
        for inst in study.plan:
            if inst.label in ("model:policy", "model:gold", "prompts", "pool"):
                study.run_stage(inst)
        return {i.label: i.id for i in study.plan}, np.load(study.runs("text_pool")[0].path / "pool.npz")

    ids0, pool0 = pool(0, a)
    ids1, pool1 = pool(1, tmp_path / "r1")
    ids1b, pool1b = pool(1, tmp_path / "r1b")
    assert ids1 == ids1b and all(np.array_equal(pool1[k], pool1b[k]) for k in pool1.files)
    assert {k for k in ids0 if ids0[k] == ids1[k]} == {"model:policy", "model:gold", "model:backbone[0]", "prompts"}
    assert not np.array_equal(pool0["tokens"], pool1["tokens"]) and not np.allclose(pool0["gold"], pool1["gold"])


def test_a_backbone_with_another_tokenizer_is_refused_up_front(tmp_path, capsys):
    tok = tiny.tokenizer(tmp_path / "tok")
    same = tiny.model(tmp_path / "same", "gpt2", width=16, heads=2, tokenizer_from=tok)
    other = tiny.model(tmp_path / "other", "gpt2", width=16, heads=2, tokenizer_from=tok)
    t = load_tokenizer(other)
    t.add_tokens(["<extra_token>"])  # one more token: ids no longer mean the same for both
    t.save_pretrained(str(other))
    check_tokenizers(resolve_text("text-tiny", [f"backbones=['hf:{same}','tiny:neox:16']"]))  # the same: accepted
    out = tmp_path / "s"
    for policy in ("tiny:gpt2:32", f"hf:{same}"):
        capsys.readouterr()
        args = ["--set", f"policy={policy}", "--set", f"backbones=['tiny:neox:16','hf:{other}']"]
        assert main(["study", "--preset", "text-tiny", "--out", str(out), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "backbones[1]" in err[0] and "tokenizer is not the policy's" in err[0], err
        assert not out.exists()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    tok = tiny.tokenizer(d / "tok")
    return {
        "llama": tiny.model(d / "llama", "llama", seed=2, tokenizer_from=tok),
        "rm": tiny.model(d / "rm", "neox", reward=True, seed=3, tokenizer_from=tok),
    }


def test_left_padding_and_pad_after_eos_give_each_rows_own_logprobs_and_reward(models):
    """A left-padded batch whose responses end at EOS at different lengths, PAD (= EOS: the tiny tokenizer has no
    pad token, as GPT-2's and Pythia's) after it: the log-probs equal transformers' on each row alone, unpadded,
    and the reward equals the scalar head at each row's own last token."""
    src = models["llama"]
    imp = load(src)
    tok = load_tokenizer(src)
    eos, pad = special_ids(tok, imp.hf_config)
    assert eos == pad  # the case where padding after EOS is EOS itself
    graphdef, cfg = with_token_ids(imp, eos, pad)
    prompts = left_padded(encode(tok, ["the quick brown fox", "a", "how do you make tea?"]), pad, 16)
    assert prompts.offsets.max() > 0
    responses = [[5, 9, eos], [7, 7, 7, 7, 11], [eos]]  # ends: EOS, truncated at T, EOS at once
    t = 5
    resp = np.full((3, t), pad, np.int32)
    for i, r in enumerate(responses):
        resp[i, : len(r)] = r
    tokens = np.concatenate([prompts.ids, resp], axis=1)
    p = prompts.length
    lp = np.asarray(response_logprobs(graphdef, imp.state, jnp.asarray(tokens), p, offset=prompts.offsets))
    valid = np.asarray(response_valid(jnp.asarray(resp), cfg))
    assert valid.sum(axis=1).tolist() == [len(r) for r in responses]
    ref_model = T.AutoModelForCausalLM.from_pretrained(src).eval()
    for i, r in enumerate(responses):
        own = prompts.ids[i, prompts.offsets[i] :].tolist() + r  # the row alone: no padding anywhere
        with torch.no_grad():
            logits = ref_model(torch.as_tensor([own])).logits[0].double()
        ref = torch.log_softmax(logits, -1)[len(own) - len(r) - 1 : -1].gather(1, torch.as_tensor(r)[:, None])[:, 0]
        np.testing.assert_allclose(lp[i, : len(r)], ref.numpy(), atol=1e-4)
        assert np.all(lp[i, len(r) :] == 0)  # PAD after EOS contributes nothing
    # reward (the proxies' "last" pooling inside the compiled programs): the batch vs each row alone
    rm = load(models["rm"], role="reward")
    rgraph, _ = abstract(
        dataclasses.replace(rm.cfg, eos_id=eos, pad_id=pad, forbidden=()), lm_head=False, scalar_head=True
    )
    unpadded = np.array([[5, 6, 7], [8, 9, 10], [11, 12, 13]], np.int32)  # the programs' prompts: one length
    batch = np.concatenate([unpadded, resp], axis=1)
    mask = valid  # the sampler's mask: True up to and including EOS
    states = jax.tree.map(lambda x: x[None], rm.state)  # an ensemble of one
    got = score(rgraph, states, batch, mask, 3)[0]
    for i, r in enumerate(responses):
        own = np.asarray([unpadded[i].tolist() + r], np.int32)
        _, values = forward(rgraph, rm.state, jnp.asarray(own))
        assert abs(float(got[i]) - float(values[0, -1])) < 1e-5, i
    # the text study's proxies read each response before its EOS (`before_eos`), as transformers' classifier
    # reads the same ids with PAD = EOS (and the decoded text, which has no EOS): equal, to 1e-5
    hf_rm = T.AutoModelForSequenceClassification.from_pretrained(models["rm"]).eval()
    hf_rm.config.pad_token_id = pad
    with torch.no_grad():
        ref = hf_rm(torch.as_tensor(batch, dtype=torch.long)).logits[:, 0].numpy()
    in_ppo = np.asarray(BeforeEos(ProxyReward(rgraph, 3, "last"), eos)((states, jnp.zeros(1)), batch, mask))
    np.testing.assert_allclose(in_ppo, ref, atol=1e-5)
    np.testing.assert_allclose(score(rgraph, states, batch, before_eos(batch, mask, eos, 3), 3)[0], ref, atol=1e-5)
    at_eos = np.asarray(ProxyReward(rgraph, 3, "last")((states, jnp.zeros(1)), batch, mask))
    assert abs(at_eos[0] - ref[0]) > 1e-3 and abs(at_eos[1] - ref[1]) < 1e-5  # EOS read: not transformers' score


def test_a_stage_sees_only_the_fields_it_declares(tmp_path):
    cfg = resolve_text("text-tiny", [])
    view = DeclaredView(cfg, ["ppo", "train.pool", "backbones[1]"], "text_x")
    assert view.ppo == cfg.ppo and view.train.pool == cfg.train.pool and view.backbones[1] == cfg.backbones[1]
    for read in (lambda v: v.seed, lambda v: v.train.lr, lambda v: v.temperature):
        with pytest.raises(UndeclaredRead, match="text_x reads config field"):
            read(view)
    # the walk computes each instance under its view: a stage reading a field it does not declare fails
    study = TextStudy(cfg, tmp_path / "s", progress=False)

    def compute(ctx, run, inst):
        run.mark_done({"n": ctx.cfg.pool + ctx.cfg.bon_prompts})  # reads bon_prompts: declared or not

    for reads, ok in (({"pool": "pool", "bon_prompts": "bon_prompts"}, True), ({"pool": "pool"}, False)):
        stage = Stage("probe", tuple(reads.values()), (), (), lambda c: [], compute, lambda *a: None)
        inst = instantiate(stage, Slot(f"probe{ok}", "probe", reads), study.cfg, {})
        if ok:
            assert study.run_stage(inst).done
        else:
            with pytest.raises(UndeclaredRead, match="probe reads config field 'bon_prompts'"):
                study.run_stage(inst)
