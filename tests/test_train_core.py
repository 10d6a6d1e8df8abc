"""Training core: optimizers, schedule, losses, LoRA, checkpoints/resume, logs and plots."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import TINY
from mlx.utils import tree_flatten

from minillm.checkpoint import cast_model, load_model, parse_dtype
from minillm.model import Model, ModelArgs, init_weights
from minillm.train import TrainConfig, train
from minillm.train.config import LORA_TARGETS, SWITCHES
from minillm.train.lora import apply_lora, fuse, load_adapters, lora_param_count, save_adapters
from minillm.train.losses import lm_loss, make_lm_loss
from minillm.train.optim import build_optimizer, lr_schedule
from minillm.train.plots import plot_run
from minillm.train.state import list_checkpoints, load_state, prune_checkpoints
from minillm.train.step import Step, to_arrays

VOCAB = 512


class FakeTokenizer:
    """What save_model needs from a tokenizer; keeps the tests off the built-in one."""

    vocab_size = VOCAB
    eos_ids = [2]

    def save(self, path):
        (Path(path) / "tokenizer_config.json").write_text("{}")


TOK = FakeTokenizer()


@dataclasses.dataclass
class Batch:
    inputs: np.ndarray
    targets: np.ndarray
    mask: np.ndarray
    n_tokens: int
    label_pos: np.ndarray | None = None
    label_mask: np.ndarray | None = None


class ListBatches:
    """A resumable iterator over fixed batches (the data pipeline's interface)."""

    def __init__(self, batches, repeat: int = 1):
        self.batches, self.i = list(batches) * repeat, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.i >= len(self.batches):
            raise StopIteration
        self.i += 1
        return self.batches[self.i - 1]

    def state(self):
        return {"i": self.i}

    def restore(self, state):
        self.i = state["i"]


def tiny(seed=0, dtype="float32", vocab=VOCAB, **over) -> Model:
    model = Model(ModelArgs(**{**TINY, "vocab_size": vocab, **over}))
    init_weights(model, seed)
    cast_model(model, parse_dtype(dtype))
    mx.eval(model.parameters())
    return model


def make_batch(seed=0, B=2, T=32, vocab=VOCAB, keep=0.7, sparse=False) -> Batch:
    rng = np.random.default_rng(seed)
    seq = rng.integers(3, vocab, (B, T + 1)).astype(np.int32)
    mask = (rng.random((B, T)) < keep).astype(np.float32)
    mask[:, 0] = 1
    b = Batch(seq[:, :-1], seq[:, 1:], mask, int(mask.sum()))
    if sparse:
        K = int(mask.sum(1).max())
        pos = np.zeros((B, K), np.int32)
        lmask = np.zeros((B, K), np.float32)
        for i in range(B):
            p = np.nonzero(mask[i])[0]
            pos[i, : len(p)], lmask[i, : len(p)] = p, 1
        b.label_pos, b.label_mask = pos, lmask
    return b


def cfg_for(tmp_path, **kw) -> TrainConfig:
    base = dict(
        out_dir=str(tmp_path / "run"),
        max_steps=8,
        warmup_steps=2,
        learning_rate=3e-3,
        dtype="float32",
        log_interval=2,
        save_interval=0,
        progress=False,
    )
    return TrainConfig(**{**base, **kw})


def grads_of(model, loss_fn, batch):
    (loss, n), g = nn.value_and_grad(model, loss_fn)(model, to_arrays(batch))
    mx.eval(loss, n, g)
    return loss, n, dict(tree_flatten(g))


def max_diff(a: dict, b: dict) -> float:
    return max((a[k].astype(mx.float32) - b[k].astype(mx.float32)).abs().max().item() for k in a)


def measured(model, loss_fn, batch):
    """`grads_of(...)` and the peak memory (MiB) that forward + backward added to what was
    already allocated (arrays other tests or fixtures still hold are not counted)."""
    mx.synchronize()
    mx.reset_peak_memory()
    base = mx.get_active_memory()
    out = grads_of(model, loss_fn, batch)
    return out, (mx.get_peak_memory() - base) / 2**20


# --- config, schedule, optimizer -----------------------------------------------------------


def test_config_cross_field_checks():
    assert TrainConfig(lora_targets="q_proj, v_proj").lora_targets == ("q_proj", "v_proj")
    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainConfig))
    for kw, msg in [
        (dict(max_steps=10, warmup_steps=10), "set warmup_steps below 10"),
        (dict(optimizer="sgd"), "set --optimizer to one of"),
        (dict(dtype="float16", optim_state_dtype="param"), "optim_state_dtype"),
        (dict(lora_dropout=0.1), "set lora_r"),
        (dict(accum_steps=0), "accum_steps"),
        (dict(lora_r=4, lora_dropout=0.1, checkpoint_every_n=1), "recompute"),
    ]:
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**kw)
    assert TrainConfig(max_steps=50, warmup_steps=5).steps_for(1000) == 50
    assert TrainConfig(epochs=2, accum_steps=4, warmup_steps=10).steps_for(101) == 51
    with pytest.raises(ValueError, match="set max_steps"):
        TrainConfig().steps_for(None)
    with pytest.raises(ValueError, match="warmup_steps below 3"):
        TrainConfig(warmup_steps=5).steps_for(3)


def test_lr_schedule_warmup_cosine_end():
    f = lr_schedule(1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    lr = [f(i).item() for i in range(110)]
    assert lr[0] == pytest.approx(0.1) and lr[4] == pytest.approx(0.5)
    assert lr[9] == pytest.approx(1.0) and lr[10] == pytest.approx(1.0)
    mid = 10 + 99 / 2
    assert f(mid).item() == pytest.approx(0.55, abs=1e-6)  # halfway: (1 + 0.1) / 2
    assert lr[109] == pytest.approx(0.1) and min(lr[10:]) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:], strict=False))


def test_adamw_bias_correction_first_step_and_no_decay_on_norms():
    cfg = TrainConfig(learning_rate=0.01, weight_decay=0.1)
    opt = build_optimizer(cfg, 0.01)
    w = mx.array([[0.5, -1.0], [2.0, 0.25]], mx.bfloat16)
    norm = mx.array([1.0, 1.0], mx.bfloat16)
    g = {"w": mx.array([[1e-3, -2.0], [0.5, 3e-4]]), "norm": mx.array([0.2, -1e-4])}
    new = opt.apply_gradients(g, {"w": w, "norm": norm})
    mx.eval(new)
    # bias-corrected first step: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps)
    gw, gn = np.array(g["w"]), np.array(g["norm"])
    want_w = np.array(w.astype(mx.float32)) * (1 - 0.01 * 0.1) - 0.01 * gw / (np.abs(gw) + 1e-8)
    want_n = 1.0 - 0.01 * gn / (np.abs(gn) + 1e-8)  # no decay on 1-D weights
    assert new["w"].dtype == mx.bfloat16 and new["norm"].dtype == mx.bfloat16
    np.testing.assert_allclose(np.array(new["w"].astype(mx.float32)), want_w, rtol=4e-3)
    np.testing.assert_allclose(np.array(new["norm"].astype(mx.float32)), want_n, rtol=4e-3)
    assert opt.state["w"]["m"].dtype == mx.float32 and opt.state["w"]["v"].dtype == mx.float32
    # without bias correction the first step would be ~lr * sqrt(1 - b2) / (1 - b1) times smaller
    p32 = build_optimizer(TrainConfig(weight_decay=0.0, optim_state_dtype="param"), 0.01)
    out = p32.apply_gradients({"x": mx.array([0.3])}, {"x": mx.array([0.0])})
    assert out["x"].item() == pytest.approx(-0.01, rel=1e-5)
    pb = build_optimizer(TrainConfig(optim_state_dtype="param"), 0.01)
    pb.init({"w": w})  # as train() does: the state follows the parameters, not fp32 grads
    out = pb.apply_gradients({"w": g["w"]}, {"w": w})
    assert out["w"].dtype == mx.bfloat16 and pb.state["w"]["v"].dtype == mx.bfloat16


@pytest.mark.parametrize("name", ["adafactor", "lion"])
def test_other_optimizers_keep_dtype_and_skip_norm_decay(tmp_path, name):
    opt = build_optimizer(TrainConfig(optimizer=name, weight_decay=0.5), 0.1)
    p = {"w": mx.ones((4, 4), mx.bfloat16), "n": mx.ones((4,), mx.bfloat16)}
    zero = {k: mx.zeros(v.shape, mx.bfloat16) for k, v in p.items()}
    new = opt.apply_gradients(zero, p)
    assert new["w"].dtype == mx.bfloat16
    assert new["n"].tolist() == [1.0] * 4 and new["w"][0, 0].item() < 1.0
    cfg = cfg_for(
        tmp_path,
        optimizer=name,
        dtype="bfloat16",
        max_steps=6,
        learning_rate=1e-3 if name == "lion" else 1e-2,
    )
    model = tiny()
    res = train(model, make_lm_loss(), ListBatches([make_batch(0)] * 6), cfg, tokenizer=TOK)
    assert res.losses[-1] < res.losses[0]
    assert {v.dtype for _, v in tree_flatten(model.parameters())} == {mx.bfloat16}


# --- the loop --------------------------------------------------------------------------------


def test_loss_falls_on_fixed_batch(tmp_path):
    batch = make_batch(0)
    cfg = cfg_for(tmp_path, max_steps=30, learning_rate=1e-2, warmup_steps=3)
    res = train(tiny(), make_lm_loss(), ListBatches([batch], repeat=30), cfg, tokenizer=TOK)
    assert res.step == 30 and len(res.losses) == 30
    assert res.losses[-1] < 0.5 * res.losses[0], res.losses


def test_accumulation_averages_per_real_token_across_micro_batches():
    a, b = make_batch(1, B=2, keep=0.15), make_batch(2, B=2, keep=0.95)
    assert a.n_tokens * 3 < b.n_tokens
    big = Batch(
        *(
            np.concatenate([x, y])
            for x, y in ((a.inputs, b.inputs), (a.targets, b.targets), (a.mask, b.mask))
        ),
        a.n_tokens + b.n_tokens,
    )
    cfg = TrainConfig(accum_steps=2, grad_clip=0.0, compile=False)
    model = tiny()
    opt = build_optimizer(cfg, 1e-3)
    step = Step(model, make_lm_loss(), opt, cfg)
    step.add(to_arrays(a))
    l1, n1 = step.loss, step.n
    step.add(to_arrays(b))
    l2, n2 = step.loss - l1, step.n - n1
    grads, _ = step._clip(step.acc, step.n)
    loss = (l1 + l2) / (n1 + n2)
    ref_loss, ref_n, ref = grads_of(model, lambda m, x: lm_loss(m, x), big)
    ref = {k: v / ref_n for k, v in ref.items()}
    assert (n1 + n2).item() == big.n_tokens
    assert loss.item() == pytest.approx((ref_loss / ref_n).item(), rel=1e-6)
    assert max_diff(dict(tree_flatten(grads)), ref) < 1e-6
    mean_of_means = ((l1 / n1 + l2 / n2) / 2).item()
    assert abs(mean_of_means - loss.item()) > 1e-3  # the wrong average really differs


def test_bf16_params_stay_bf16_through_training_and_checkpoints(tmp_path):
    cfg = cfg_for(tmp_path, dtype="bfloat16", max_steps=4, save_interval=2)
    model = tiny()
    res = train(model, make_lm_loss(), ListBatches([make_batch(0)], repeat=4), cfg, tokenizer=TOK)
    assert {v.dtype for _, v in tree_flatten(model.parameters())} == {mx.bfloat16}
    assert all(np.isfinite(res.losses))
    for ckpt in res.checkpoints:
        assert {v.dtype for v in mx.load(f"{ckpt}/model.safetensors").values()} == {mx.bfloat16}
        assert json.loads(Path(ckpt, "config.json").read_text())["torch_dtype"] == "bfloat16"
        opt = mx.load(f"{ckpt}/optimizer.safetensors")
        assert opt["model.layers.0.mlp.down_proj.weight.m"].dtype == mx.float32
        reloaded = load_model(ckpt)
        assert {v.dtype for _, v in tree_flatten(reloaded.parameters())} == {mx.bfloat16}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_compiled_step_matches_eager(tmp_path, dtype):
    batches = [make_batch(i) for i in range(3)]
    runs = {}
    for compiled in (False, True):
        cfg = cfg_for(
            tmp_path / str(compiled), compile=compiled, max_steps=6, accum_steps=2, dtype=dtype
        )
        runs[compiled] = train(
            tiny(), make_lm_loss(), ListBatches(batches, repeat=4), cfg, tokenizer=TOK
        ).losses
    # bitwise equal on mlx 0.32 CPU; the tolerance leaves room for fused GPU kernels
    np.testing.assert_allclose(runs[True], runs[False], rtol=1e-5 if dtype == "float32" else 2e-3)


# --- memory-saving losses --------------------------------------------------------------------


@pytest.fixture(scope="module")
def big():
    """Logits dominate: vocab 6400, T 256, d 64; a quarter of the targets are trained."""
    return tiny(vocab=6400), make_batch(5, B=2, T=256, vocab=6400, keep=0.25, sparse=True)


@pytest.mark.parametrize("variant", ["chunked", "sparse", "sparse+chunked"])
def test_chunked_and_sparse_loss_equal_plain_with_less_memory(big, variant):
    model, batch = big
    kw = dict(chunk_size=32 if "chunked" in variant else 0, sparse="sparse" in variant)
    (l0, n0, g0), m0 = measured(model, make_lm_loss(), batch)
    (l1, n1, g1), m1 = measured(model, make_lm_loss(**kw), batch)
    assert n0.item() == n1.item() == batch.n_tokens
    assert l1.item() == pytest.approx(l0.item(), rel=1e-5)
    assert max_diff(g0, g1) < 1e-5
    print(f"{variant}: peak {m0:.1f} MiB -> {m1:.1f} MiB")
    assert m1 < 0.75 * m0


@pytest.mark.parametrize("tied", [True, False])
def test_chunked_loss_uneven_chunks_and_untied_head(tied):
    model, batch = tiny(tie_word_embeddings=tied), make_batch(3, T=30, sparse=True)
    l0, _, g0 = grads_of(model, make_lm_loss(), batch)
    for kw in (dict(chunk_size=7), dict(chunk_size=4, sparse=True), dict(chunk_size=100)):
        l1, _, g1 = grads_of(model, make_lm_loss(**kw), batch)
        assert l1.item() == pytest.approx(l0.item(), rel=1e-5) and max_diff(g0, g1) < 1e-5


def test_gradient_checkpointing_same_grads_less_memory():
    model, batch = tiny(), make_batch(6, B=2, T=512)  # activations dominate
    (l0, _, g0), m0 = measured(model, make_lm_loss(), batch)
    (l1, _, g1), m1 = measured(model, make_lm_loss(checkpoint_every_n=1), batch)
    assert l1.item() == pytest.approx(l0.item(), rel=1e-6)
    assert max_diff(g0, g1) < 1e-6
    print(f"checkpointing: peak {m0:.1f} MiB -> {m1:.1f} MiB")
    assert m1 < 0.9 * m0


# --- LoRA ------------------------------------------------------------------------------------


def test_lora_count_fuse_and_save_load(tmp_path):
    model = tiny(seed=1)
    base_logits = model(mx.array(make_batch(0).inputs))
    r = 4
    apply_lora(model, r=r, alpha=8.0, targets=LORA_TARGETS)
    a = model.args
    d, kv, ff = a.hidden_size, a.num_key_value_heads * a.head_dim, a.intermediate_size
    shapes = [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)]
    assert lora_param_count(model) == a.num_hidden_layers * sum(r * (i + o) for i, o in shapes)
    ids = mx.array(make_batch(0).inputs)
    assert mx.allclose(model(ids), base_logits, atol=1e-6)  # B starts at zero
    for _, p in tree_flatten(model.trainable_parameters()):
        p[...] = mx.random.normal(p.shape) * 0.05  # pretend training moved the adapters
    model.update(model.trainable_parameters())
    adapted = model(ids)
    assert not mx.allclose(adapted, base_logits, atol=1e-3)
    save_adapters(tmp_path / "ad", model, base_model="some/base")
    conf = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert conf["r"] == 4 and conf["alpha"] == 8.0 and conf["base_model"] == "some/base"
    assert conf["lora_parameters"]["scale"] == 2.0
    assert "self_attn.q_proj" in conf["lora_parameters"]["keys"]
    names = mx.load(str(tmp_path / "ad" / "adapters.safetensors"))
    assert "model.layers.0.self_attn.q_proj.lora_a" in names
    fresh = load_adapters(tiny(seed=1), tmp_path / "ad")
    assert mx.allclose(fresh(ids), adapted, atol=1e-5)
    fused = fuse(model)
    assert not [k for k, _ in tree_flatten(fused.parameters()) if "lora" in k]
    np.testing.assert_allclose(np.array(fused(ids)), np.array(adapted), atol=1e-4)


def test_lora_training_updates_only_adapters(tmp_path):
    model = tiny(seed=2)
    before = dict(tree_flatten(model.parameters()))
    cfg = cfg_for(
        tmp_path,
        lora_r=4,
        lora_alpha=8.0,
        lora_dropout=0.1,
        max_steps=4,
        save_interval=4,
        learning_rate=1e-2,
    )
    res = train(model, make_lm_loss(), ListBatches([make_batch(0)], repeat=4), cfg, tokenizer=TOK)
    after = dict(tree_flatten(model.parameters()))
    frozen = [k for k in after if "lora" not in k]
    assert all(mx.array_equal(before[k.replace(".linear.", ".")], after[k]) for k in frozen)
    assert any(not mx.array_equal(v, 0) for k, v in after.items() if k.endswith("lora_b"))
    ckpt = Path(res.checkpoints[-1])
    assert (ckpt / "adapters.safetensors").is_file() and (ckpt / "adapter_config.json").is_file()
    plain = load_model(ckpt)  # the checkpoint's model.safetensors holds the fused weights
    ids = mx.array(make_batch(0).inputs)
    model.eval()
    np.testing.assert_allclose(np.array(plain(ids)), np.array(model(ids)), atol=1e-4)


# --- checkpoints and resume --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["float32", "bfloat16", "lora+dropout"])
def test_resume_reproduces_losses_bitwise(tmp_path, kind):
    data = [make_batch(i) for i in range(16)]
    kw = dict(max_steps=8, save_interval=4, accum_steps=2, warmup_steps=2)
    if kind == "lora+dropout":  # dropout masks come from mx.random: the RNG must be restored
        kw.update(lora_r=4, lora_dropout=0.2, learning_rate=1e-2)
    else:
        kw.update(dtype=kind)
    full = train(
        tiny(), make_lm_loss(), ListBatches(data), cfg_for(tmp_path / "a", **kw), tokenizer=TOK
    )
    cfg = cfg_for(tmp_path / "b", **kw)
    first = train(tiny(), make_lm_loss(), ListBatches(data[:8]), cfg, tokenizer=TOK)
    assert first.step == 4 and first.losses == full.losses[:4]
    # a fresh process: new model (other init unless LoRA's base), new iterator, from the run
    # folder; the iterator restarts at 0 and must be moved by restore()
    model = tiny(seed=0 if cfg.lora_r else 9)
    second = train(
        model, make_lm_loss(), ListBatches(data), cfg, tokenizer=TOK, start_state=cfg.out_dir
    )
    assert second.step == 8
    assert second.losses == full.losses[4:]  # bitwise
    st = load_state(cfg.out_dir)
    assert st.step == 8 and st.cursor == {"i": 16} and st.tokens_seen == full.tokens_seen
    assert st.optimizer == "adamw" and st.rng


def test_resume_refuses_other_optimizer_or_state_dtype(tmp_path):
    cfg = cfg_for(tmp_path, max_steps=2, warmup_steps=1, save_interval=2)
    train(tiny(), make_lm_loss(), ListBatches([make_batch(0)] * 2), cfg, tokenizer=TOK)
    for kw, msg in [
        (dict(optim_state_dtype="param"), "optim_state_dtype=float32"),
        (dict(optimizer="lion"), "optimizer=adamw"),
        (dict(dtype="bfloat16"), "dtype=float32"),
    ]:
        other = cfg_for(tmp_path, max_steps=4, **kw)
        with pytest.raises(ValueError, match=msg):
            train(
                tiny(),
                make_lm_loss(),
                ListBatches([make_batch(0)] * 4),
                other,
                tokenizer=TOK,
                start_state=other.out_dir,
            )


def test_no_checkpoint_after_a_crash(tmp_path):
    class Boom(ListBatches):
        def __next__(self):
            if self.i == 3:
                raise RuntimeError("disk on fire")
            return super().__next__()

    cfg = cfg_for(tmp_path, max_steps=8, save_interval=2)
    with pytest.raises(RuntimeError, match="disk on fire"):
        train(tiny(), make_lm_loss(), Boom([make_batch(0)] * 8), cfg, tokenizer=TOK)
    assert [s for s, _ in list_checkpoints(cfg.out_dir)] == [2]


def test_prune_keeps_highest_steps_not_newest_files(tmp_path):
    root = tmp_path / "checkpoints"
    for i, step in enumerate([300, 20, 1000, 5]):
        p = root / f"step_{step:08d}"
        p.mkdir(parents=True)
        (p / "state.json").write_text("{}")
        os.utime(p, (1e9 + i * 100, 1e9 + i * 100))  # step 5 is the newest on disk
    (root / ".step_00002000.partial-1").mkdir()
    (root / "..step_00002000.partial-1.tmp-abc").mkdir()
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in root.iterdir()) == ["step_00000300", "step_00001000"]


def test_save_interval_and_end_save_once(tmp_path):
    cfg = cfg_for(tmp_path, max_steps=5, save_interval=2, keep_last_checkpoints=0)
    res = train(tiny(), make_lm_loss(), ListBatches([make_batch(0)] * 5), cfg, tokenizer=TOK)
    assert [s for s, _ in list_checkpoints(cfg.out_dir)] == [2, 4, 5]
    assert len(res.checkpoints) == 3
    with pytest.raises(ValueError, match="checkpoints up to step 5; resume"):
        train(tiny(), make_lm_loss(), ListBatches([make_batch(0)] * 5), cfg, tokenizer=TOK)
    # data running out ends the run early, with one save at the last step
    cfg = cfg_for(tmp_path / "short", max_steps=10, save_interval=3, log_interval=4, progress=True)
    res = train(tiny(), make_lm_loss(), ListBatches([make_batch(0)] * 6), cfg, tokenizer=TOK)
    assert res.step == 6 and [s for s, _ in list_checkpoints(cfg.out_dir)] == [3, 6]
    assert [r["step"] for r in res.logs] == [4, 6]
    # nothing left to do: no step, no second save of step 6
    again = train(
        tiny(),
        make_lm_loss(),
        ListBatches([make_batch(0)] * 6),
        cfg,
        tokenizer=TOK,
        start_state=cfg.out_dir,
    )
    assert again.step == 6 and again.checkpoints == [] and again.losses == []


# --- logs and plots --------------------------------------------------------------------------


def test_log_line_metrics_run_json_and_plots(tmp_path, capsys):
    cfg = cfg_for(tmp_path, max_steps=6, save_interval=3, profile_timing=True)
    seen = []
    train(
        tiny(),
        make_lm_loss(),
        ListBatches([make_batch(0)] * 6),
        cfg,
        tokenizer=TOK,
        on_log=seen.append,
    )
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step=")]
    assert len(lines) == 3 and lines[0].startswith("step=2 loss=")
    for key in ("lr=", "grad_norm=", "tok/s=", "ms/step=", "peak_mem=", "MiB", "fwd_bwd="):
        assert key in lines[-1]
    out = Path(cfg.out_dir)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in records if r["event"] == "log"]
    assert [r["step"] for r in logs] == [2, 4, 6] and logs == seen
    for key in ("loss", "lr", "grad_norm", "tok_s", "ms_step", "peak_mem_mib", "tokens_seen"):
        assert all(math.isfinite(r[key]) for r in logs)
    assert set(logs[-1]["ms"]) == {"data", "h2d", "fwd_bwd", "clip", "opt"}
    assert logs[-1]["tokens_seen"] == 6 * make_batch(0).n_tokens
    assert [r["step"] for r in records if r["event"] == "checkpoint"] == [3, 6]
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["learning_rate"] == cfg.learning_rate and run["total_steps"] == 6
    files = plot_run(out)
    assert {f.name for f in files} >= {"loss.png", "lr.png", "tok_s.png"}
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)


def test_pipelined_steps_equal_synchronous_ones(tmp_path):
    """The loop dispatches step n+1 before reading step n; the losses, logs and final weights
    equal a run that finishes every step first (an `on_step` callback forces that)."""
    batches = [make_batch(seed=s) for s in range(7)]
    runs, seen = {}, []
    for mode in ("pipelined", "sync"):
        model = tiny(seed=1)
        cfg = cfg_for(tmp_path / mode, max_steps=7, log_interval=3)
        on_step = (lambda step, m: seen.append(step)) if mode == "sync" else None
        res = train(
            model, make_lm_loss(), ListBatches(batches), cfg, tokenizer=TOK, on_step=on_step
        )
        runs[mode] = (res, dict(tree_flatten(model.parameters())))
        if mode == "sync":
            assert seen == list(range(1, 8))
    (pr, pw), (sr, sw) = runs["pipelined"], runs["sync"]
    assert pr.step == sr.step == 7 and pr.tokens_seen == sr.tokens_seen
    assert pr.losses == sr.losses and len(set(pr.losses)) == 7
    assert [r["step"] for r in pr.logs] == [r["step"] for r in sr.logs] == [3, 6, 7]
    assert [r["loss"] for r in pr.logs] == [r["loss"] for r in sr.logs]
    assert max_diff(pw, sw) == 0.0


def test_pipelined_run_stops_when_data_runs_out(tmp_path):
    """Data that ends before max_steps: every dispatched step is counted, logged and saved."""
    model = tiny(seed=2)
    cfg = cfg_for(tmp_path, max_steps=50, log_interval=4)
    data = ListBatches([make_batch(seed=s) for s in range(5)])
    res = train(model, make_lm_loss(), data, cfg, tokenizer=TOK)
    assert res.step == 5 and len(res.losses) == 5
    assert [r["step"] for r in res.logs] == [4, 5]
    assert list_checkpoints(Path(cfg.out_dir))[-1][0] == 5


def test_step_switches_are_run_settings_recorded_in_run_json(tmp_path):
    """The step's A/B switches are TrainConfig fields: every combination trains the same
    numbers on the CPU (the fused kernels are GPU-only; the rest are the same math), and the
    run's settings are in run.json."""
    data = [make_batch(i) for i in range(4)]
    base = train(tiny(), make_lm_loss(), ListBatches(data), cfg_for(tmp_path / "on"), tokenizer=TOK)
    off = {k: False for k in SWITCHES}
    cfg = cfg_for(tmp_path / "off", **off)
    res = train(tiny(), make_lm_loss(fast_ce=False), ListBatches(data), cfg, tokenizer=TOK)
    np.testing.assert_allclose(res.losses, base.losses, rtol=1e-5)
    saved = json.loads((tmp_path / "off" / "run" / "run.json").read_text())["config"]
    assert {k: saved[k] for k in SWITCHES} == off
    on = json.loads((tmp_path / "on" / "run" / "run.json").read_text())["config"]
    assert all(on[k] for k in SWITCHES if k != "multi_tensor")  # the defaults are unchanged
    assert not on["multi_tensor"]  # new, off until measured on a GPU
