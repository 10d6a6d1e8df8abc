"""`minillm chat`: interactive chat with a checkpoint; the conversation is kept between turns.

Commands: /reset (forget the history), /system TEXT (set the system message), /exit.
Replies go to stdout, everything else to stderr, so piped stdin gives clean output.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from minillm.infer import (
    add_sampling_args,
    chat_prompt,
    empty_hint,
    load_for_inference,
    sampling_params,
    stats_line,
)

HELP = "commands: /reset  /system TEXT  /exit"


class Conversation:
    """Chat history that renders to prompt ids, dropping the oldest turns beyond `max_tokens`."""

    def __init__(self, tokenizer, system: str | None = None, max_tokens: int | None = None):
        self.tokenizer = tokenizer
        self.system = system
        self.max_tokens = max_tokens
        self.turns: list[tuple[str, str]] = []
        self.dropped = 0

    def reset(self) -> None:
        self.turns = []
        self.dropped = 0

    def messages(self, user: str | None = None) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        for u, a in self.turns:
            msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        if user is not None:
            msgs.append({"role": "user", "content": user})
        return msgs

    def prompt(self, user: str) -> list[int]:
        """Prompt ids for the next reply to `user`, trimming old turns to fit `max_tokens`."""
        ids = chat_prompt(self.tokenizer, self.messages(user))
        while self.max_tokens is not None and len(ids) > self.max_tokens and self.turns:
            self.turns.pop(0)
            self.dropped += 1
            ids = chat_prompt(self.tokenizer, self.messages(user))
        if self.max_tokens is not None and len(ids) > self.max_tokens:
            raise ValueError(
                f"the message needs {len(ids)} tokens but the context allows "
                f"{self.max_tokens}; send something shorter"
            )
        return ids

    def add(self, user: str, reply: str) -> None:
        self.turns.append((user, reply))


def reply(model, tokenizer, ids: list[int], params):
    """Stream one reply to stdout; returns its `Generation`."""
    from minillm.generate import stream_generate

    gen = None
    for item in stream_generate(model, tokenizer, [ids], params):
        if isinstance(item, list):
            gen = item[0]
        elif item.text:
            sys.stdout.write(item.text)
            sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return gen


def handle_command(conv: Conversation, line: str) -> bool:
    """Run a /command; False means exit."""
    cmd, _, arg = line.partition(" ")
    if cmd in ("/exit", "/quit"):
        return False
    if cmd == "/reset":
        conv.reset()
        print("[history cleared]", file=sys.stderr)
    elif cmd == "/system":
        conv.system = arg.strip() or None
        print(f"[system message {'set' if conv.system else 'removed'}]", file=sys.stderr)
    else:
        print(f"[unknown command {cmd}; {HELP}]", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="minillm chat",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_sampling_args(p)
    p.add_argument(
        "--max_history_tokens",
        type=int,
        default=None,
        help="drop the oldest turns once the prompt would exceed this "
        "(default: max_seq_len - max_new_tokens)",
    )
    p.add_argument("--verbose", action="store_true", help="per-turn token counts on stderr")
    ns = p.parse_args(argv)
    params = sampling_params(ns)
    if ns.max_history_tokens is not None and ns.max_history_tokens < 1:
        raise ValueError(f"--max_history_tokens={ns.max_history_tokens} must be >= 1")

    model, tokenizer = load_for_inference(ns)
    limit = ns.max_seq_len or model.args.max_position_embeddings
    budget = ns.max_history_tokens or max(1, limit - ns.max_new_tokens)
    conv = Conversation(tokenizer, ns.system, budget)
    tty = sys.stdin.isatty()
    if tty:
        adapters = f" + adapters {ns.adapter_path}" if ns.adapter_path else ""
        print(f"[chat] {ns.checkpoint}{adapters} | {HELP} | Ctrl-D to quit", file=sys.stderr)
    turn, hinted = 0, False
    while True:
        try:
            line = input(">>> " if tty else "").strip()
        except (EOFError, KeyboardInterrupt):
            if tty:
                print(file=sys.stderr)
            return 0
        if not line:
            continue
        if line.startswith("/"):
            if not handle_command(conv, line):
                return 0
            continue
        try:
            ids = conv.prompt(line)
        except ValueError as e:
            print(f"[chat] {e}", file=sys.stderr)
            continue
        turn += 1
        try:
            gen = reply(model, tokenizer, ids, dataclasses.replace(params, seed=ns.seed + turn))
        except KeyboardInterrupt:
            print("\n[interrupted; reply discarded]", file=sys.stderr)
            continue
        conv.add(line, gen.text)
        if not gen.text.strip() and not hinted:
            hinted = True
            print(empty_hint("chat", gen), file=sys.stderr)
        if ns.verbose:
            print(
                f"{stats_line('chat', gen)} | turn {turn}, {len(conv.turns)} turns in history, "
                f"{conv.dropped} dropped",
                file=sys.stderr,
            )


if __name__ == "__main__":
    from minillm.cli import run

    run(main)
