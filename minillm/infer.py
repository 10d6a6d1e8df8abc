"""`minillm infer`: generate a reply to one prompt from a checkpoint."""

from __future__ import annotations

import argparse
import sys

from minillm.checkpoint import load_with_adapters  # noqa: F401  (its old import path)


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """Flags shared by `infer` and `chat`: checkpoint, sampling and context limits."""
    p.add_argument(
        "--checkpoint", required=True, help="checkpoint folder (config.json + model.safetensors)"
    )
    p.add_argument(
        "--tokenizer_path",
        default=None,
        help="tokenizer folder (default: the checkpoint's, else the built-in one)",
    )
    p.add_argument(
        "--adapter_path",
        default=None,
        help="LoRA adapter folder (adapters.safetensors + adapter_config.json), "
        "fused into the weights at load",
    )
    p.add_argument("--dtype", default=None, help="cast weights to float32 | bfloat16 | float16")
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument(
        "--min_new_tokens", type=int, default=0, help="forbid stopping before this many tokens"
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass (1 = off)")
    p.add_argument("--top_k", type=int, default=0, help="sample from the k best (0 = off)")
    p.add_argument("--repetition_penalty", type=float, default=1.0, help="HF-style (1 = off)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument(
        "--max_seq_len",
        type=int,
        default=None,
        help="context limit (default: the model's max_position_embeddings)",
    )


def sampling_params(ns: argparse.Namespace):
    """The `SamplingParams` of the parsed flags, checked before the model loads."""
    from minillm.sampling import SamplingParams

    names = (
        "max_new_tokens",
        "min_new_tokens",
        "temperature",
        "top_p",
        "top_k",
        "repetition_penalty",
        "seed",
        "max_seq_len",
    )
    return SamplingParams(**{k: getattr(ns, k) for k in names})


def load_for_inference(ns: argparse.Namespace):
    return load_with_adapters(
        ns.checkpoint, ns.tokenizer_path, ns.dtype, getattr(ns, "adapter_path", None)
    )


def chat_prompt(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` in the chat template, ending with the assistant's turn header."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict):
        ids = ids["input_ids"]
    return [int(t) for t in ids]


def build_prompt(
    tokenizer, prompt: str, system: str | None = None, chat_template: bool = True
) -> list[int]:
    if not chat_template:
        return tokenizer.encode(prompt)
    messages = [{"role": "system", "content": system}] if system else []
    return chat_prompt(tokenizer, [*messages, {"role": "user", "content": prompt}])


def stats_line(prog: str, gen) -> str:
    n = len(gen.tokens)
    tps = n / gen.gen_time if gen.gen_time > 0 else 0.0
    return (
        f"[{prog}] prompt {gen.prompt_tokens} tok in {gen.prompt_time:.2f}s | generated {n} "
        f"tok, {tps:.1f} tok/s | finish: {gen.finish_reason}"
    )


def empty_hint(prog: str, gen) -> str:
    why = (
        "the model ended its turn at once"
        if gen.finish_reason == "stop"
        else "the tokens decode to nothing printable"
    )
    return (
        f"[{prog}] empty reply: {why}. An untrained or barely trained checkpoint does this; "
        "try --min_new_tokens 8, --temperature 0.7, or train longer."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="minillm infer", description=__doc__)
    add_sampling_args(p)
    p.add_argument("--prompt", default="hi")
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    p.add_argument(
        "--no_chat_template",
        action="store_true",
        help="feed --prompt as raw text (plain continuation, no chat template)",
    )
    ns = p.parse_args(argv)
    params = sampling_params(ns)

    from minillm.generate import generate, stream_generate

    model, tokenizer = load_for_inference(ns)
    ids = build_prompt(tokenizer, ns.prompt, ns.system, not ns.no_chat_template)
    if not ids:
        raise ValueError("--prompt encodes to no tokens; give some text")
    if ns.stream:
        for item in stream_generate(model, tokenizer, [ids], params):
            if isinstance(item, list):
                gen = item[0]
            else:
                sys.stdout.write(item.text)
                sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        gen = generate(model, tokenizer, [ids], params)[0]
        print(gen.text)
    sys.stdout.flush()
    if not gen.text.strip():
        print(empty_hint("infer", gen), file=sys.stderr)
    print(stats_line("infer", gen), file=sys.stderr)
    return 0


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
