"""`minillm init`: write a freshly initialised checkpoint folder."""

from __future__ import annotations

import argparse

from minillm.model import PRESETS, ModelArgs

DIM_FLAGS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
)
BOOL_MOE_FLAGS = ("use_moe", "norm_topk_prob", "seq_aux")
INT_MOE_FLAGS = ("n_routed_experts", "num_experts_per_tok", "n_shared_experts")
MOE_FLAGS = (*BOOL_MOE_FLAGS, *INT_MOE_FLAGS, "aux_loss_alpha", "scoring_func")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by every verb that builds a model from a preset."""
    p.add_argument("--preset", default="tiny", help=f"one of {', '.join(PRESETS)}, or custom")
    for name in DIM_FLAGS:
        p.add_argument(f"--{name}", type=int, default=None, help="override the preset")
    p.add_argument("--rope_theta", type=float, default=None)
    p.add_argument("--rms_norm_eps", type=float, default=None)
    help_ = {
        "use_moe": "Mixture-of-Experts MLP (MiniMind's); intermediate_size is then per expert",
        "n_routed_experts": "routed experts per MoE layer [default 4]",
        "num_experts_per_tok": "routed experts each token uses (top-k) [default 2]",
        "n_shared_experts": "experts every token uses [default 1]",
        "norm_topk_prob": "renormalise the top-k gate weights to sum to 1 [default on]",
        "seq_aux": "sequence-level (on, MiniMind) or token-level aux loss [default on]",
        "aux_loss_alpha": "weight of the MoE load-balancing loss [default 0.1]",
        "scoring_func": "gate scoring function [default softmax]",
    }
    for name in MOE_FLAGS:
        kw: dict = {"default": None, "help": help_[name]}
        if name in BOOL_MOE_FLAGS:
            kw["action"] = argparse.BooleanOptionalAction
        elif name in INT_MOE_FLAGS:
            kw["type"] = int
        elif name == "aux_loss_alpha":
            kw["type"] = float
        else:
            kw["choices"] = ["softmax"]
        p.add_argument(f"--{name}", **kw)


def model_args_from(ns: argparse.Namespace, vocab_size: int) -> ModelArgs:
    over = {k: getattr(ns, k) for k in (*DIM_FLAGS, "rope_theta", "rms_norm_eps")}
    over.update({k: getattr(ns, k, None) for k in MOE_FLAGS})
    over["vocab_size"] = over["vocab_size"] or vocab_size
    if ns.preset == "custom":
        return ModelArgs(**{k: v for k, v in over.items() if v is not None})
    return ModelArgs.from_preset(ns.preset, **over)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="minillm init", description=__doc__)
    add_model_args(p)
    p.add_argument("--out_dir", required=True, help="checkpoint folder to write")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--dtype", default="bfloat16", help="float32 | bfloat16 | float16")
    p.add_argument("--tokenizer_path", default=None, help="HF tokenizer folder (default: built-in)")
    ns = p.parse_args(argv)

    from minillm.checkpoint import cast_model, check_vocab, parse_dtype, save_model
    from minillm.model import Model, init_weights, num_params
    from minillm.tokenizer import load_tokenizer

    dtype = parse_dtype(ns.dtype)
    tokenizer = load_tokenizer(ns.tokenizer_path)
    args = model_args_from(ns, tokenizer.vocab_size)
    model = Model(args)
    check_vocab(model, tokenizer, "--vocab_size")
    init_weights(model, ns.seed)
    cast_model(model, dtype)
    out = save_model(ns.out_dir, model, tokenizer)
    n = num_params(model)
    print(
        f"[init] preset={ns.preset} params={n / 1e6:.2f}M dtype={ns.dtype} "
        f"size={n * dtype.size / 2**20:.1f} MiB -> {out}"
    )


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
