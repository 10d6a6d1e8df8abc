"""Checkpoint folders in Hugging Face layout: config.json + model.safetensors + tokenizer files.

The one loader: find a run's checkpoints (`list_checkpoints`, `find_checkpoint`), its LoRA
adapters (`find_adapters`), and load a model (`load_model`), with its tokenizer (`load`), with
adapters fused (`load_with_adapters`). Every verb and both learners load through here.

A folder written here opens unmodified with `transformers.AutoModelForCausalLM`, `mlx_lm.load`
and `minillm.load`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from minillm.models import MOE_MODEL_TYPE, Model, ModelArgs, init_weights
from minillm.tokenizer import Tokenizer, load_tokenizer

DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def parse_dtype(name: str) -> mx.Dtype:
    aliases = {
        "fp32": "float32",
        "bf16": "bfloat16",
        "fp16": "float16",
        "f32": "float32",
        "f16": "float16",
    }
    name = aliases.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def model_dtype(model: nn.Module) -> mx.Dtype:
    return model.model.embed_tokens.weight.dtype


def cast_model(model: nn.Module, dtype: mx.Dtype) -> None:
    """Cast every floating parameter to `dtype` (norms included)."""
    model.update(
        nn.utils.tree_map(
            lambda p: p.astype(dtype) if mx.issubdtype(p.dtype, mx.floating) else p,
            model.parameters(),
        )
    )


def hf_config(args: ModelArgs, dtype: mx.Dtype) -> dict[str, Any]:
    """config.json of a checkpoint. MoE checkpoints (`use_moe`) are MiniLLM-only: they name
    no transformers architecture (`minillm export hf` converts them to Mixtral where it fits)."""
    cfg = args.to_dict()
    cfg.update(
        architectures=["MiniLLMMoEForCausalLM" if args.use_moe else "LlamaForCausalLM"],
        model_type=MOE_MODEL_TYPE if args.use_moe else "llama",
        torch_dtype=DTYPE_NAMES[dtype],
        attention_dropout=0.0,
        initializer_range=0.02,
        pretraining_tp=1,
        use_cache=True,
    )
    return cfg


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def swap_in(staged: Path, final: Path) -> None:
    """Move the finished folder `staged` to `final`, replacing an old one with renames only."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_model(
    out_dir: str | os.PathLike,
    model: Model,
    tokenizer: Tokenizer,
    extra_files: dict[str, Any] | None = None,
) -> Path:
    """Write `out_dir` atomically: files go to a temp folder beside it, then one rename."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        args, dtype = model.args, model_dtype(model)
        write_json(tmp / "config.json", hf_config(args, dtype))
        weights = dict(nn.utils.tree_flatten(model.parameters()))
        mx.save_safetensors(str(tmp / "model.safetensors"), weights, metadata={"format": "mlx"})
        eos = sorted({args.eos_token_id, *tokenizer.eos_ids})
        write_json(
            tmp / "generation_config.json",
            {
                "bos_token_id": args.bos_token_id,
                "eos_token_id": eos,
                "pad_token_id": args.pad_token_id,
                "do_sample": True,
                "temperature": 0.7,
                "top_p": 0.9,
            },
        )
        tokenizer.save(tmp)
        for name, obj in (extra_files or {}).items():
            write_json(tmp / name, obj)
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_config(path: Path) -> ModelArgs:
    cfg_path = path / "config.json"
    if not path.is_dir():
        raise FileNotFoundError(
            f"checkpoint folder {path} does not exist; pass a folder written by `minillm init` "
            "or `minillm train` (it holds config.json and model.safetensors)"
        )
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{cfg_path} is missing; {path} is not a checkpoint folder (expected config.json "
            "and model.safetensors, as written by `minillm init` or `minillm train`)"
        )
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        if not isinstance(cfg, dict):
            raise ValueError("top level is not a JSON object")
        if cfg.get("model_type") == MOE_MODEL_TYPE:  # a llama-family model with MoE MLPs
            cfg = {**cfg, "model_type": "llama"}
        return ModelArgs.from_dict(cfg)
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{cfg_path}: invalid config ({e}); fix the file or re-create the "
            "checkpoint with `minillm init`"
        ) from None


def read_weights(path: Path) -> dict[str, mx.array]:
    files = sorted(path.glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(
            f"{path / 'model.safetensors'} is missing; re-save the checkpoint or point "
            "--checkpoint at a folder that has it"
        )
    weights: dict[str, mx.array] = {}
    for f in files:
        try:
            weights.update(mx.load(str(f)))
        except Exception as e:  # mlx raises RuntimeError/ValueError for bad headers and sizes
            raise ValueError(
                f"{f} is truncated or corrupt ({e}); re-save or re-download it"
            ) from None
    return weights


def check_weights(model: Model, weights: dict[str, mx.array], where: Path) -> dict[str, mx.array]:
    if model.args.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    weights = {k: v for k, v in weights.items() if "rotary_emb" not in k}
    expected = dict(nn.utils.tree_flatten(model.parameters()))
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{where}: weights do not match config.json (missing: {missing[:3]}, "
            f"unexpected: {unexpected[:3]}); the weights were saved for another architecture"
        )
    for k, v in weights.items():
        if v.shape != expected[k].shape:
            raise ValueError(
                f"{where}: {k} has shape {tuple(v.shape)} but config.json implies "
                f"{tuple(expected[k].shape)}; config.json and the weights disagree, re-create "
                "the checkpoint or fix config.json"
            )
    return weights


# A training run's checkpoints: <out_dir>/checkpoints/step_XXXXXXXX/ with a state.json
# (minillm/train/state.py writes them).
STATE_FILE = "state.json"
PREFIX = "step_"


def checkpoints_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / "checkpoints"


def list_checkpoints(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under `out_dir`, sorted by step number (not mtime)."""
    root = checkpoints_dir(out_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        num = p.name[len(PREFIX) :]
        if (
            p.is_dir()
            and p.name.startswith(PREFIX)
            and num.isdigit()
            and (p / STATE_FILE).is_file()
        ):
            found.append((int(num), p))
    return sorted(found)


def find_checkpoint(path: str | os.PathLike) -> Path | None:
    """`path` itself if it is a checkpoint, else the newest checkpoint of run folder `path`."""
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    ckpts = list_checkpoints(path)
    return ckpts[-1][1] if ckpts else None


def find_adapters(path: str | os.PathLike) -> Path:
    """The folder with the adapter files: `path` itself or the newest checkpoint of run `path`."""
    from minillm.train.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(
            f"adapter folder {p} does not exist; pass a folder written by a "
            "LoRA run (`minillm train --lora_r R`)"
        )
    if not (p / ADAPTER_CONFIG).is_file():
        ckpt = find_checkpoint(p)
        if ckpt is not None and (ckpt / ADAPTER_CONFIG).is_file():
            p = ckpt
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (p / name).is_file():
            raise FileNotFoundError(
                f"{p / name} is missing; pass a folder holding "
                f"{ADAPTER_WEIGHTS} and {ADAPTER_CONFIG} (a LoRA checkpoint)"
            )
    return p


def adapter_base(path: str | os.PathLike) -> str | None:
    """The base model recorded in `path/adapter_config.json` (None if it has none)."""
    from minillm.train.lora import ADAPTER_CONFIG

    cfg_path = Path(path) / ADAPTER_CONFIG
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path}: invalid JSON ({e.msg}); re-save the adapters") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{cfg_path}: top level is not a JSON object; re-save the adapters")
    return cfg.get("base_model") or cfg.get("model") or None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """`path` itself, or the newest checkpoint (by step number) of run folder `path`."""
    path = Path(path)
    if (path / "config.json").is_file() or not (path / "checkpoints").is_dir():
        return path
    return find_checkpoint(path) or path


def load_model(path: str | os.PathLike, dtype: mx.Dtype | None = None) -> Model:
    path = resolve_checkpoint(path)
    args = read_config(path)
    model = Model(args)
    weights = check_weights(model, read_weights(path), path / "model.safetensors")
    model.load_weights(list(weights.items()))
    if dtype is not None:
        cast_model(model, dtype)
    mx.eval(model.parameters())
    return model


def check_vocab(model: Model, tokenizer: Tokenizer, where: Path) -> None:
    if tokenizer.vocab_size > model.args.vocab_size:
        raise ValueError(
            f"{where}: tokenizer has {tokenizer.vocab_size} tokens but config.json "
            f"vocab_size={model.args.vocab_size}; pass the tokenizer the model was trained "
            "with (--tokenizer_path)"
        )


def load(
    path: str | os.PathLike, tokenizer_path: str | None = None, dtype: mx.Dtype | None = None
) -> tuple[Model, Tokenizer]:
    """Load `(model, tokenizer)` from a checkpoint folder, like `mlx_lm.load`.

    The tokenizer comes from `tokenizer_path`, else the folder itself, else the built-in one.
    """
    path = resolve_checkpoint(path)
    model = load_model(path, dtype)
    if tokenizer_path is None and (path / "tokenizer.json").is_file():
        tokenizer_path = str(path)
    tokenizer = load_tokenizer(tokenizer_path)
    check_vocab(model, tokenizer, path / "config.json")
    return model, tokenizer


def load_or_init(
    base: str | os.PathLike | None,
    tokenizer_path: str | None = None,
    args: Callable[[int], ModelArgs] | None = None,
    seed: int = 0,
) -> tuple[Model, Tokenizer]:
    """`(model, tokenizer)` a run starts from: the checkpoint `base` (as `load`), or without
    one a fresh `Model(args(vocab_size))` (the tokenizer's vocabulary) initialised with
    `seed`. Every verb and learner that starts a model goes through here."""
    if base:
        return load(base, tokenizer_path)
    if args is None:
        raise ValueError("no checkpoint to start from and no model shape; pass --init_from or a preset")  # fmt: skip
    tokenizer = load_tokenizer(tokenizer_path)
    model = Model(args(tokenizer.vocab_size))
    check_vocab(model, tokenizer, Path("--vocab_size"))
    init_weights(model, seed)
    mx.eval(model.parameters())
    return model, tokenizer


def load_with_adapters(
    checkpoint: str,
    tokenizer_path: str | None = None,
    dtype: str | None = None,
    adapter_path: str | None = None,
):
    """`(model, tokenizer)` of `checkpoint`, with the LoRA adapters of `adapter_path` (a folder
    with adapter_config.json, or a LoRA run) fused into its weights, so generation runs at the
    plain model's speed; cast to `dtype`."""
    dt = parse_dtype(dtype) if dtype else None
    if not adapter_path:
        return load(checkpoint, tokenizer_path, dt)
    from minillm.train.lora import fuse, load_adapters

    adapters = find_adapters(adapter_path)
    model, tokenizer = load(checkpoint, tokenizer_path)
    fuse(load_adapters(model, adapters))
    if dt is not None:
        cast_model(model, dt)
    model.eval()
    mx.eval(model.parameters())
    return model, tokenizer
