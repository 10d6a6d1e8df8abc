"""Byte-level BPE tokenizer: HF tokenizer folders, the ChatML template, SFT masks, training.

`python -m minillm.tokenizer train --vocab_size 6400 --out_dir DIR` rebuilds the shipped
tokenizer from the built-in corpus (see `minillm.data.corpus`); `--data a.txt,b.jsonl` trains
on your own text instead.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Any

DEFAULT_TOKENIZER_DIR = Path(__file__).parent / "assets" / "tokenizer"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EXTRA_TOKENS = ["<think>", "</think>"]
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
_HINT = "pass --tokenizer_path to a folder with tokenizer.json, or omit it to use the built-in one"


@lru_cache(maxsize=16)
def _compile_template(source: str):
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)


def _token_str(tok: Any) -> str | None:
    return tok.get("content") if isinstance(tok, dict) else tok


class Tokenizer:
    """A `tokenizers.Tokenizer` (or, for other HF folders, a transformers tokenizer) plus the
    special-token names and chat template of its `tokenizer_config.json`."""

    def __init__(self, backend: Any, config: dict | None = None, path: Path | None = None):
        from tokenizers import Tokenizer as _Fast

        self._tk = backend if isinstance(backend, _Fast) else None
        self._hf = None if self._tk is not None else backend
        self._hf_vocab = self._hf.get_vocab() if self._hf is not None else {}
        self.path = path
        self.config = dict(config or {})
        if self._hf is not None:
            for k in ("pad_token", "bos_token", "eos_token"):
                self.config.setdefault(k, getattr(self._hf, k, None))
            self.config.setdefault("chat_template", getattr(self._hf, "chat_template", None))
        template = self.config.get("chat_template")
        if isinstance(template, list):
            named = {t.get("name"): t.get("template") for t in template}
            template = named.get("default", next(iter(named.values()), None))
        self.chat_template: str = template or CHATML_TEMPLATE

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, path={str(self.path)!r})"

    def token_to_id(self, token: str | None) -> int | None:
        """Id of `token` (a whole vocabulary entry), or None if it isn't one."""
        if token is None:
            return None
        if self._tk is not None:
            return self._tk.token_to_id(token)
        return self._hf_vocab.get(token)

    def _first_id(self, *tokens: str | None) -> int | None:
        return next((i for t in tokens if (i := self.token_to_id(t)) is not None), None)

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        if self._tk is not None:
            return self._tk.get_vocab_size(with_added_tokens=True)
        return len(self._hf)

    @property
    def pad_id(self) -> int | None:
        pad = self._first_id(_token_str(self.config.get("pad_token")), "<|endoftext|>")
        return self.eos_id if pad is None else pad

    @property
    def bos_id(self) -> int | None:
        return self._first_id(_token_str(self.config.get("bos_token")))

    @property
    def eos_id(self) -> int | None:
        return self._first_id(
            _token_str(self.config.get("eos_token")), "<|im_end|>", "<|endoftext|>", "</s>"
        )

    @property
    def eos_ids(self) -> set[int]:
        """Ids that end generation: `eos_id` (`<|im_end|>` for ours) plus `<|endoftext|>` if
        the vocabulary has it, so documents ended by the pad/eot token also stop."""
        ids = {self.eos_id, self.token_to_id("<|endoftext|>")}
        return {i for i in ids if i is not None}

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special tokens written in the text are recognised."""
        if self._tk is not None:
            return self._tk.encode(text, add_special_tokens=add_special_tokens).ids
        return self._hf.encode(text, add_special_tokens=add_special_tokens)

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        """`encode` of each text (in parallel for `tokenizers` backends)."""
        if self._tk is not None:
            encs = self._tk.encode_batch(list(texts), add_special_tokens=add_special_tokens)
            return [e.ids for e in encs]
        return [self.encode(t, add_special_tokens) for t in texts]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; special tokens are dropped unless `skip_special_tokens=False`."""
        ids = [int(i) for i in ids]
        if self._tk is not None:
            return self._tk.decode(ids, skip_special_tokens=skip_special_tokens)
        return self._hf.decode(ids, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(
        self,
        messages: list[dict],
        add_generation_prompt: bool = False,
        tokenize: bool = False,
        **kwargs: Any,
    ) -> str | list[int]:
        """Render `messages` with the chat template, as `transformers` does; ids if `tokenize`."""
        messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
        specials = {
            k: _token_str(self.config.get(k)) for k in ("bos_token", "eos_token", "pad_token")
        }
        text = _compile_template(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **{**specials, **kwargs}
        )
        return self.encode(text) if tokenize else text

    def save(self, out_dir: str | os.PathLike) -> None:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json to `out_dir`
        (loadable by `transformers.AutoTokenizer` as a `PreTrainedTokenizerFast`)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self._hf is not None:
            self._hf.save_pretrained(str(out))
            return
        self._tk.save(str(out / "tokenizer.json"))
        added = {
            str(i): {
                "content": t.content,
                "lstrip": t.lstrip,
                "normalized": t.normalized,
                "rstrip": t.rstrip,
                "single_word": t.single_word,
                "special": t.special,
            }
            for i, t in sorted(self._tk.get_added_tokens_decoder().items())
        }
        names = {k: _token_str(self.config.get(k)) for k in ("bos_token", "eos_token", "pad_token")}
        cfg = {
            "add_bos_token": False,
            "add_eos_token": False,
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,
            "tokenizer_class": "PreTrainedTokenizerFast",
            **self.config,
            **names,
            "added_tokens_decoder": added,
            "chat_template": self.chat_template,
        }
        _write_json(out / "tokenizer_config.json", cfg)
        _write_json(out / "special_tokens_map.json", {k: v for k, v in names.items() if v})


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(
        json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt tokenizer file {path}: {e}") from None


def load_tokenizer(path: str | os.PathLike | None = None) -> Tokenizer:
    """Load the tokenizer in folder `path` (None: the built-in one shipped in the package).

    Folders with a `tokenizer.json` load through `tokenizers`; other HF tokenizer folders
    (e.g. sentencepiece) through `transformers.AutoTokenizer`.
    """
    p = Path(DEFAULT_TOKENIZER_DIR if path is None else path).expanduser()
    if p.is_file() and p.name == "tokenizer.json":
        p = p.parent
    if not p.is_dir():
        raise FileNotFoundError(f"tokenizer folder not found: {p}; {_HINT}")
    cfg_file, tk_file = p / "tokenizer_config.json", p / "tokenizer.json"
    config = _read_json(cfg_file) if cfg_file.is_file() else {}
    if "chat_template" not in config and (p / "chat_template.jinja").is_file():
        config["chat_template"] = (p / "chat_template.jinja").read_text(encoding="utf-8")
    if tk_file.is_file():
        from tokenizers import Tokenizer as _Fast

        try:
            backend = _Fast.from_file(str(tk_file))
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"corrupt tokenizer file {tk_file}: {msg}") from None
        return Tokenizer(backend, config, p)
    if cfg_file.is_file() or any(p.glob("*.model")) or (p / "vocab.json").is_file():
        from transformers import AutoTokenizer

        try:
            backend = AutoTokenizer.from_pretrained(str(p))
        except Exception as e:
            raise ValueError(f"cannot load the tokenizer in {p}: {e}") from None
        return Tokenizer(backend, config, p)
    raise FileNotFoundError(f"no tokenizer.json or tokenizer_config.json in {p}; {_HINT}")


def chat_ids_and_mask(tok: Tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of `messages` rendered as ChatML (whatever `tok.chat_template` is) and a loss
    mask that is 1 exactly on each assistant turn's content tokens and its `<|im_end|>`.

    Pieces are cut where the byte-level pre-tokenizer cannot merge across them (at special
    tokens, and between the role name and its newline), so `ids == tok.encode(rendered)`. If an
    answer starts with whitespace, the header's newline can merge into its first token, which
    is then masked 1.
    """
    pieces: list[tuple[str, int]] = []
    for m in messages:
        role, content = m["role"], m.get("content") or ""
        if role == "assistant":
            pieces += [
                (f"<|im_start|>{role}", 0),
                ("\n" + content, 2),
                ("<|im_end|>", 1),
                ("\n", 0),
            ]
        else:
            pieces.append((f"<|im_start|>{role}\n{content}<|im_end|>\n", 0))
    newline = tok.encode("\n")
    ids, mask = [], []
    for piece, kind in pieces:
        piece_ids = tok.encode(piece)
        keep = [int(kind > 0)] * len(piece_ids)
        if kind == 2 and piece_ids[: len(newline)] == newline:
            keep[: len(newline)] = [0] * len(newline)
        ids += piece_ids
        mask += keep
    return ids, mask


def _file_lines(path: str) -> Iterator[str]:
    with open(path, encoding="utf-8", newline="\n") as f:
        if not path.endswith(".jsonl"):
            yield from f
            return
        for lineno, line in enumerate(f, 1):
            try:
                obj = json.loads(line) if line.strip() else {}
                conv = obj.get("conversations") or obj.get("messages")
                text = (
                    obj["text"] + "\n"
                    if isinstance(obj.get("text"), str)
                    else (_compile_template(CHATML_TEMPLATE).render(messages=conv) if conv else "")
                )
            except Exception as e:
                raise ValueError(
                    f"{path}:{lineno}: not a text/conversations record ({e})"
                ) from None
            if text:
                yield text


def training_texts(
    files: list[str] | None = None, seed: int = 0, target_mb: float | None = None
) -> Iterator[str]:
    """Training text: `.txt` lines / `.jsonl` `text` or `conversations` fields of `files`, or
    the built-in corpus; grouped in chunks and split at special tokens."""
    if files:
        lines: Iterable[str] = (ln for f in files for ln in _file_lines(f))
    else:
        from minillm.data.corpus import DEFAULT_TARGET_MB, build_corpus

        docs = build_corpus(seed, DEFAULT_TARGET_MB if target_mb is None else target_mb)
        lines = (ln + "\n" for doc in docs for ln in doc.split("\n"))
    it, special = iter(lines), re.compile("|".join(map(re.escape, SPECIAL_TOKENS + EXTRA_TOKENS)))
    while chunk := "".join(islice(it, 256)):
        yield from (part for part in special.split(chunk) if part)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 6400, min_frequency: int = 2, show_progress: bool = True
) -> Tokenizer:
    """Train a byte-level BPE tokenizer with exactly `vocab_size` ids: `<|endoftext|>`=0 (pad),
    `<|im_start|>`=1, `<|im_end|>`=2 (eos), `<think>`=3, `</think>`=4, then bytes and merges."""
    from tokenizers import Tokenizer as _Fast
    from tokenizers import decoders, models, pre_tokenizers, trainers

    added = SPECIAL_TOKENS + EXTRA_TOKENS
    if vocab_size < 256 + len(added):
        raise ValueError(
            f"--vocab_size must be at least {256 + len(added)} (256 byte tokens + "
            f"{len(added)} added tokens), got {vocab_size}"
        )
    tk = _Fast(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=added,
        show_progress=show_progress,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tk.train_from_iterator(texts, trainer)
    if (n := tk.get_vocab_size(with_added_tokens=True)) < vocab_size:
        raise ValueError(
            f"the training text supports only {n} tokens, fewer than --vocab_size "
            f"{vocab_size}; add more data or lower --min_frequency"
        )
    spec = json.loads(tk.to_str())
    for t in spec["added_tokens"]:
        t["special"] = t["content"] in SPECIAL_TOKENS
    config = {
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHATML_TEMPLATE,
    }
    return Tokenizer(_Fast.from_str(json.dumps(spec)), config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="minillm tokenizer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train a byte-level BPE tokenizer")
    tr.add_argument(
        "--data",
        default=None,
        help="comma-separated .txt/.jsonl files (default: the built-in corpus)",
    )
    tr.add_argument("--vocab_size", type=int, default=6400)
    tr.add_argument("--out_dir", required=True)
    tr.add_argument("--min_frequency", type=int, default=2)
    co = sub.add_parser("corpus", help="write the built-in training corpus to a file")
    co.add_argument("--out", required=True)
    for p in (tr, co):
        p.add_argument("--seed", type=int, default=0, help="seed of the built-in corpus")
        p.add_argument(
            "--corpus_mb",
            type=float,
            default=None,
            help="size of the built-in corpus in MB (default 6)",
        )
    args = parser.parse_args(argv)

    if args.cmd == "corpus":
        from minillm.data.corpus import DEFAULT_TARGET_MB, write_corpus

        n = write_corpus(args.out, args.seed, args.corpus_mb or DEFAULT_TARGET_MB)
        print(f"wrote {n / 1e6:.2f} MB of corpus (seed {args.seed}) to {args.out}")
        return
    files = [f.strip() for f in args.data.split(",") if f.strip()] if args.data else None
    for f in files or []:
        if not os.path.isfile(f):
            raise FileNotFoundError(f"data file not found: {f}")
    nbytes = 0

    def counted(texts: Iterable[str]) -> Iterator[str]:
        nonlocal nbytes
        for t in texts:
            nbytes += len(t.encode("utf-8"))
            yield t

    t0 = time.perf_counter()
    texts = counted(training_texts(files, args.seed, args.corpus_mb))
    tok = train_tokenizer(
        texts, args.vocab_size, args.min_frequency, show_progress=sys.stderr.isatty()
    )
    tok.save(args.out_dir)
    source = ",".join(files) if files else f"built-in corpus (seed {args.seed})"
    print(
        f"trained tokenizer: vocab {tok.vocab_size} ({tok.pad_id}=<|endoftext|> "
        f"{tok.bos_id}=<|im_start|> {tok.eos_id}=<|im_end|>) on {nbytes / 1e6:.1f} MB of "
        f"{source} in {time.perf_counter() - t0:.1f}s -> {args.out_dir}"
    )


if __name__ == "__main__":
    main()
