"""`minillm <verb> ...`: one module per verb, each with a `main(argv)`; errors print one line."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

VERBS = {
    "init": "write a freshly initialised checkpoint folder",
    "infer": "generate a reply to one prompt from a checkpoint",
    "chat": "interactive chat with a checkpoint (history kept)",
    "tokenizer": "train the byte-level BPE tokenizer / regenerate its corpus",
    "pipeline": "download -> pretrain -> SFT -> [distill] -> [RL] -> infer (--smoke_test: offline)",
    "train": "pretrain or SFT (full or LoRA) a model on JSONL data",
    "distill": "streaming distillation from a teacher on Ray (generators, shards, learner)",
    "rl": "GSM8K GRPO on Ray (rollout workers, replay buffer, learner, evaluator)",
    "pretokenize": "tokenize JSONL data once, on all cores, for faster training",
    "eval": "token-weighted loss and perplexity of a checkpoint on JSONL data",
    "fuse": "merge LoRA adapters into their base model (a full checkpoint folder)",
    "plot": "draw a run's training curves (loss, lr, throughput) as PNG files",
    "serve": "Ollama- and OpenAI-compatible HTTP server for a checkpoint (batched decoding)",
    "export": "write a transformers folder or a GGUF file (llama.cpp / ollama) of a checkpoint",
    "bench": "accuracy and speed on synthetic zh/en suites vs checkpoints, Ollama or OpenAI servers",
    "stats": "parameters by component, FLOPs per token, device peak and MFU",
    "speed": "train-step and decode throughput on random tokens (every loop switch)",
}
# verbs whose code is not at minillm.<verb>
MODULES = {"bench": "minillm.eval.bench"}


def run(
    main: Callable[[list[str] | None], object],
    argv: list[str] | None = None,
    prog: str | None = None,
    entry: bool | None = None,
) -> None:
    """Run a verb's main; user errors become one line on stderr and exit code 2.

    Set MINILLM_DEBUG=1 to see the full traceback instead.
    """
    if prog is None:  # `python -m minillm.train.cli` -> "minillm train"
        module = getattr(main, "__module__", "minillm")
        if module == "__main__":
            spec = getattr(sys.modules["__main__"], "__spec__", None)
            module = spec.name if spec else "minillm"
        prog = " ".join(module.split(".")[:2])
    if entry is None:
        entry = argv is None
    if entry:  # a process entry point, not a call from Python code or tests
        from minillm.blas import maybe_reexec

        maybe_reexec()
    try:
        rc = main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except ModuleNotFoundError as e:
        no_backend(e, prog)
        raise
    except (
        ValueError,
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
    ) as e:
        if os.environ.get("MINILLM_DEBUG"):
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(rc if isinstance(rc, int) else 0)


def import_main(module: str, prog: str) -> Callable[[list[str] | None], object]:
    """`module.main`, with the one-line install hint (exit 2) when MLX is missing."""
    try:
        return importlib.import_module(module).main
    except ModuleNotFoundError as e:
        no_backend(e, prog)
        raise


def launch(module: str, prog: str) -> None:
    """A launch/ script's entry point: import `module`'s `main` and `run` it."""
    run(import_main(module, prog), prog=prog, entry=True)


def usage() -> str:
    lines = ["usage: minillm <verb> [args]  (also: python -m minillm.<verb>)", "", "verbs:"]
    lines += [f"  {v:<10} {h}" for v, h in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    entry = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0)
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"minillm: error: unknown verb {verb!r}\n{usage()}", file=sys.stderr)
        sys.exit(2)
    prog = f"minillm {verb}"
    run(import_main(MODULES.get(verb, f"minillm.{verb}"), prog), rest, prog=prog, entry=entry)


NO_BACKEND = (
    "{prog}: error: MLX is not installed (no module {name!r}); install MiniLLM with the MLX "
    "backend for this machine: python launch/install.py  (or pip install -e '.[cpu]' / '.[cuda]')"
)


def no_backend(e: ModuleNotFoundError, prog: str) -> None:
    """Exit 2 with the install line when `e` is MLX (or mlx-lm) missing; return otherwise."""
    name = e.name or ""
    if name.split(".")[0] in ("mlx", "mlx_lm") and not os.environ.get("MINILLM_DEBUG"):
        print(NO_BACKEND.format(prog=prog, name=name), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
