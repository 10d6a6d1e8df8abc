"""DPO: the loss against hand-computed values, response-only masks, data validation, exact
resume of the pair batches, and tiny-model runs whose reward margin grows."""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import make_tiny

from minillm.data.jsonl import JsonlReader
from minillm.train.cli import dpo_ref_path, main
from minillm.train.dpo import DpoBatches, dpo_loss, encode_pair, make_dpo_loss, sequence_logp

BETA = 0.1


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def turns(prompt: str, answer: str, system: str | None = None) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    return [*head, {"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


def write_jsonl(path: Path, lines: list) -> str:
    path.write_text(
        "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines),
        encoding="utf-8",
    )
    return str(path)


def preference_pairs(n: int = 64, seed: int = 0, strings: bool = False) -> list[dict]:
    """`What is A+B?` with the right sum chosen and a wrong one rejected."""
    r = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = r.randint(0, 9), r.randint(0, 9)
        wrong = (a + b + r.randint(1, 9)) % 19
        q, good, bad = f"What is {a}+{b}?", f"{a}+{b} = {a + b}", f"{a}+{b} = {wrong}"
        if strings:
            out.append({"prompt": q, "chosen": good, "rejected": bad})
        else:
            out.append({"chosen": turns(q, good), "rejected": turns(q, bad)})
    return out


# ---------------------------------------------------------------- the loss, by hand


def test_sigmoid_and_ipo_loss_match_hand_computed_values():
    pc, pr = [-1.0, -3.0, -2.0], [-2.0, -1.0, -2.0]
    rc, rr = [-1.5, -2.0, -2.0], [-1.8, -1.5, -2.0]
    args = [mx.array(v) for v in (pc, pr, rc, rr)]
    # pair 0: h = (-1 + 1.5) - (-2 + 1.8) = 0.5 + 0.2 = 0.7
    # pair 1: h = (-3 + 2) - (-1 + 1.5) = -1 - 0.5 = -1.5
    # pair 2: policy == reference: h = 0
    hs = [0.7, -1.5, 0.0]
    want_sigmoid = [-math.log(sigmoid(BETA * h)) for h in hs]
    assert want_sigmoid[2] == pytest.approx(math.log(2))
    assert want_sigmoid[0] == pytest.approx(math.log(1 + math.exp(-0.07)))
    losses, chosen, rejected = dpo_loss(*args, BETA)
    np.testing.assert_allclose(np.array(losses), want_sigmoid, rtol=1e-5)
    np.testing.assert_allclose(np.array(chosen), [0.05, -0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.array(rejected), [-0.02, 0.05, 0.0], atol=1e-6)
    # IPO: (h - 1/(2*beta))^2 with 1/(2*0.1) = 5
    losses, _, _ = dpo_loss(*args, BETA, kind="ipo")
    np.testing.assert_allclose(np.array(losses), [(0.7 - 5) ** 2, (-1.5 - 5) ** 2, 25.0], rtol=1e-5)
    assert pytest.approx(18.49) == (0.7 - 5) ** 2
    # a large beta*h stays finite (softplus form)
    big = dpo_loss(mx.array([0.0]), mx.array([-1e4]), mx.array([0.0]), mx.array([0.0]), 1.0)[0]
    assert float(big[0]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="hinge"):
        dpo_loss(*args, BETA, kind="hinge")


def test_rewards_have_no_gradient_and_the_loss_gradient_is_right():
    ref = [mx.array([-1.5]), mx.array([-1.8])]

    def f(pc):
        losses, rc, _ = dpo_loss(pc, mx.array([-2.0]), *ref, BETA)
        return losses.sum() + rc.sum()  # rc adds nothing to the gradient

    g = mx.grad(f)(mx.array([-1.0]))
    # d/dpc -log σ(β h) = -β (1 - σ(β h)), h = 0.7
    assert float(g[0]) == pytest.approx(-BETA * (1 - sigmoid(BETA * 0.7)), rel=1e-5)


def test_loss_fn_on_a_batch_policy_equal_to_reference(tmp_path):
    """Policy == reference: every real pair has loss log 2 and margin 0; padding pairs count
    for nothing."""
    model, tok = make_tiny(seed=0)
    path = write_jsonl(tmp_path / "p.jsonl", preference_pairs(3))
    batches = DpoBatches(path, tok, make_tiny(seed=0)[0], seq_len=32, batch_size=4)
    batch = next(batches)
    assert batch.n_pairs == 3 and batch.pair_mask.tolist() == [1, 1, 1, 0]
    assert batch.inputs.shape == (8, 32) and batch.ref_chosen_logp.shape == (4,)
    arrays = {k: mx.array(getattr(batch, k)) for k in ("inputs", "targets", "mask", "pair_mask")}
    arrays |= {k: mx.array(getattr(batch, k)) for k in ("ref_chosen_logp", "ref_rejected_logp")}
    loss, n, aux = make_dpo_loss(beta=BETA)(model, arrays)
    assert float(n) == 3
    assert float(loss) == pytest.approx(3 * math.log(2), rel=1e-4)
    assert abs(float(aux["reward_margin"])) < 1e-4
    assert set(aux) == {"reward_margin", "chosen_reward", "rejected_reward", "accuracy"}
    # the reference log-probs are the summed response log-probs of the chosen/rejected rows
    logp = np.array(sequence_logp(model, arrays["inputs"], arrays["targets"], arrays["mask"]))
    np.testing.assert_allclose(batch.ref_chosen_logp[:3], logp[:3], rtol=1e-5)
    np.testing.assert_allclose(batch.ref_rejected_logp[:3], logp[4:7], rtol=1e-5)
    assert (logp[:3] < 0).all() and logp[3] == 0 and logp[7] == 0


# ---------------------------------------------------------------- records and masks


def test_only_the_last_assistant_turn_is_trained():
    _, tok = make_tiny()
    prompt = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"},
        {"role": "user", "content": "What is 2+3?"},
    ]
    rec = {"prompt": prompt, "chosen": "2+3 = 5", "rejected": "2+3 = 7"}
    (c_ids, c_mask), (r_ids, r_mask) = encode_pair(tok, rec, seq_len=256)
    from minillm.tokenizer import chat_ids_and_mask

    n_prompt = len(chat_ids_and_mask(tok, prompt)[0])
    assert chat_ids_and_mask(tok, prompt)[1].count(1) > 0  # SFT would train "hello there"
    for ids, mask, answer in ((c_ids, c_mask, "2+3 = 5"), (r_ids, r_mask, "2+3 = 7")):
        assert not mask[:n_prompt].any()
        assert mask[n_prompt:].any()
        assert tok.decode(ids[mask == 1].tolist()).startswith(answer)
        assert "hello" not in tok.decode(ids[mask == 1].tolist())
    assert c_ids[:n_prompt].tolist() == r_ids[:n_prompt].tolist()
    # cut to seq_len + 1 tokens; nothing of the response left -> None
    k = int(np.argmax(c_mask))  # the first response token, after the assistant header
    assert k > n_prompt
    short = encode_pair(tok, rec, seq_len=k)
    assert len(short[0][0]) == k + 1 and short[0][1].tolist() == c_mask[: k + 1].tolist()
    assert encode_pair(tok, rec, seq_len=k - 1) is None


def test_string_records_become_user_and_assistant_turns(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", preference_pairs(1, strings=True))
    _, rec = JsonlReader([path], "dpo", 6400).next()
    assert rec["prompt"][0]["role"] == "user" and rec["prompt"][0]["content"].startswith("What")
    assert isinstance(rec["chosen"], str) and isinstance(rec["rejected"], str)


def test_long_pairs_are_dropped_and_counted(tmp_path):
    _, tok = make_tiny()
    long_q = "word " * 80
    lines = [*preference_pairs(3), {"chosen": turns(long_q, "a"), "rejected": turns(long_q, "b")}]
    path = write_jsonl(tmp_path / "l.jsonl", lines)
    batches = DpoBatches(path, tok, make_tiny()[0], seq_len=32, batch_size=2)
    assert batches.num_batches() == 2
    assert sum(b.n_pairs for b in batches) == 3 and batches.dropped == 1


GOOD = preference_pairs(1)[0]


@pytest.mark.parametrize(
    "bad, reason",
    [
        ({"rejected": GOOD["rejected"]}, "missing field: dpo needs 'chosen' and 'rejected'"),
        (
            {"chosen": turns("What is 1+1?", "2"), "rejected": turns("What is 1+2?", "3")},
            "prompt mismatch: 'chosen' and 'rejected' must share the turns before the last "
            "assistant turn; they differ at turn 0",
        ),
        (
            {"chosen": turns("q", "a", system="s"), "rejected": turns("q", "b")},
            "prompt mismatch",
        ),
        ('{"chosen": [', "bad JSON"),
        ({"chosen": "a", "rejected": "b"}, "bad dpo pair: string 'chosen'/'rejected' need"),
        ({"chosen": turns("q", "a"), "rejected": "b"}, "bad dpo pair"),
        (
            {"chosen": turns("q", "a")[:1], "rejected": turns("q", "b")[:1]},
            "bad conversation: 'chosen': no assistant turn",
        ),
        (
            {"chosen": [*turns("q", "a"), {"role": "user", "content": "x"}], "rejected": []},
            "bad dpo pair: the last turn of 'chosen' must be the assistant's",
        ),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, bad, reason):
    _, tok = make_tiny()
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, bad, GOOD])
    batches = DpoBatches(path, tok, make_tiny()[0], seq_len=32, batch_size=2)
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: {reason}")):
        list(batches)
    skipping = DpoBatches(path, tok, make_tiny()[0], seq_len=32, batch_size=2, skip_bad_lines=True)
    assert sum(b.n_pairs for b in skipping) == 2 and sum(skipping.skipped.values()) == 1


# ---------------------------------------------------------------- resume


def test_dpo_batches_resume_exactly(tmp_path):
    model, tok = make_tiny()
    path = write_jsonl(tmp_path / "p.jsonl", preference_pairs(10))
    kw = dict(seq_len=32, batch_size=4, seed=3, epochs=2, shuffle_buffer=6, ref_from="REF")

    def fields(b):
        return [b.inputs, b.targets, b.mask, b.ref_chosen_logp, b.ref_rejected_logp, b.pair_mask]

    full = DpoBatches(path, tok, model, **kw)
    assert full.num_batches() == 5
    first = [next(full) for _ in range(2)]
    state = json.loads(json.dumps(full.state()))
    assert state["ref_from"] == "REF" and state["buffer"]
    rest = list(full)
    assert len(first) + len(rest) == 5 and rest[-1].n_pairs == 4  # 20 pairs in all
    again = DpoBatches(path, tok, model, **kw)
    again.restore(state)
    resumed = list(again)
    assert len(resumed) == len(rest)
    for a, b in zip(rest, resumed, strict=True):
        assert a.epoch == b.epoch and a.n_pairs == b.n_pairs
        for x, y in zip(fields(a), fields(b), strict=True):
            np.testing.assert_array_equal(x, y)
    # a fresh run yields the same first batches (the shuffle is seeded)
    np.testing.assert_array_equal(
        next(iter(DpoBatches(path, tok, model, **kw))).inputs, first[0].inputs
    )


# ---------------------------------------------------------------- tiny-model training


FLAGS_BASE = ["--dtype", "float32", "--seq_len", "32", "--warmup_steps", "2",
              "--shuffle_buffer", "64", "--log_interval", "5"]  # fmt: skip


def run_dpo(tmp_path, data: str, ckpt: str, out: str, *extra: str) -> list[dict]:
    base = ["--task", "dpo", "--data_path", data, "--init_from", ckpt, "--out_dir", out]
    main(base + FLAGS_BASE + ["--batch_size", "8", "--save_interval", "0", *extra])
    lines = (Path(out) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r.get("event") == "log"]


def test_tiny_model_margin_and_accuracy_grow(tmp_path, tiny_ckpt, capsys):
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(64))
    out = str(tmp_path / "run")
    logs = run_dpo(
        tmp_path, data, tiny_ckpt, out, "--max_steps", "40", "--epochs", "5",
        "--learning_rate", "3e-3",
    )  # fmt: skip
    first, last = logs[0], logs[-1]
    print(f"first {first}\nlast {last}")
    for rec in logs:
        for k in ("loss", "reward_margin", "chosen_reward", "rejected_reward", "accuracy"):
            assert math.isfinite(rec[k]), (k, rec)
        assert rec["reward_margin"] == pytest.approx(
            rec["chosen_reward"] - rec["rejected_reward"], abs=1e-5
        )
    assert len(logs) == 8 and last["step"] == 40
    # measured: step 5 margin ~0.02, accuracy ~0.45; step 40 margin ~0.62, accuracy ~0.85
    assert last["reward_margin"] > 0.3 and last["reward_margin"] > first["reward_margin"] + 0.2
    assert last["accuracy"] >= 0.7 and last["accuracy"] > first["accuracy"]
    assert last["loss"] < math.log(2) - 0.1 < first["loss"] + 0.1
    # a resumed run takes the reference from the data cursor, not the resumed weights
    ns = argparse.Namespace(ref_from=None, init_from=None, resume=out)
    assert dpo_ref_path(ns) == str(Path(tiny_ckpt).resolve())


def test_tiny_model_lora_run_completes(tmp_path, tiny_ckpt):
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(32, seed=1, strings=True))
    out = str(tmp_path / "lora")
    logs = run_dpo(
        tmp_path, data, tiny_ckpt, out, "--max_steps", "10", "--lora_r", "4",
        "--learning_rate", "1e-2", "--dpo_loss", "ipo", "--dpo_beta", "0.5", "--epochs", "3",
    )  # fmt: skip
    assert logs[-1]["step"] == 10 and all(math.isfinite(r["loss"]) for r in logs)
    ckpt = Path(out) / "checkpoints" / "step_00000010"
    assert (ckpt / "adapter_config.json").is_file()
    run = json.loads((Path(out) / "run.json").read_text(encoding="utf-8"))
    assert run["trainable_params"] < run["params"] / 5
    assert run["config"]["dpo_loss"] == "ipo" and run["config"]["dpo_beta"] == 0.5
    ns = argparse.Namespace(ref_from=None, init_from=None, resume=out)
    assert dpo_ref_path(ns) == str(Path(tiny_ckpt).resolve())


def test_dpo_needs_a_reference(tmp_path):
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(4))
    with pytest.raises(ValueError, match="--task dpo needs a reference model"):
        main(["--task", "dpo", "--data_path", data, "--out_dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        main(["--task", "dpo", "--data_path", data, "--dpo_loss", "hinge"])


def test_cli_resume_is_exact(tmp_path, tiny_ckpt):
    """A DPO run resumed from its step-2 checkpoint ends with the same weights; the reference
    comes back from the data cursor (the resumed weights are not the reference)."""
    import shutil

    data = write_jsonl(tmp_path / "pairs.jsonl", preference_pairs(16))
    flags = ["--max_steps", "4", "--batch_size", "4", "--learning_rate", "3e-3"]
    a, b = tmp_path / "a", tmp_path / "b"
    run_dpo(tmp_path, data, tiny_ckpt, str(a), *flags, "--save_interval", "2")
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "step_00000004")
    argv = ["--task", "dpo", "--data_path", data, "--resume", str(b), "--out_dir", str(b)]
    main(argv + FLAGS_BASE + flags + ["--save_interval", "2"])
    wa = mx.load(str(a / "checkpoints" / "step_00000004" / "model.safetensors"))
    wb = mx.load(str(b / "checkpoints" / "step_00000004" / "model.safetensors"))
    assert max(float(mx.abs(wa[k] - wb[k]).max()) for k in wa) == 0.0


def test_minimind_dpo_aliases_name_the_dpo_file():
    from minillm.data.hub import alias_file

    assert alias_file("minimind:dpo.jsonl", "dpo") == "dpo.jsonl"
    assert alias_file("minimind:dpo", "dpo") == "dpo.jsonl"
    assert alias_file("minimind", "dpo") == "dpo.jsonl"
