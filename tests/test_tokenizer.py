import json
import random

import pytest

from minillm.data.corpus import build_corpus, write_corpus
from minillm.tokenizer import (
    CHATML_TEMPLATE,
    DEFAULT_TOKENIZER_DIR,
    chat_ids_and_mask,
    load_tokenizer,
    main,
)

SPECIALS = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
CONVERSATIONS = [
    [{"role": "user", "content": "你好"}],
    [
        {"role": "system", "content": "你是一个乐于助人的助手。"},
        {"role": "user", "content": "1 + 2 等于几？"},
        {"role": "assistant", "content": "1 + 2 = 3。"},
        {"role": "user", "content": "再加 4 呢？"},
        {"role": "assistant", "content": "3 + 4 = 7，答案是 7。"},
    ],
    [
        {"role": "user", "content": "Write a function.\n\n  Indented line"},
        {"role": "assistant", "content": "def f(x):\n    return x * 2\n"},
    ],
    [
        {"role": "user", "content": " leading space"},
        {"role": "assistant", "content": "  \n\nodd leading whitespace 🙂"},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "<think>\n嗯</think>好的"},
    ],
    [
        {"role": "user", "content": "code?"},
        {"role": "assistant", "content": "    return x\n"},
        {"role": "user", "content": "再来"},
        {"role": "assistant", "content": "\n\n两个换行开头。"},
    ],
]
TEXTS = [
    "",
    "hello world",
    "  多个  空格\t\ttabs\n\nnew lines  ",
    "中文分词测试：人工智能、机器学习。",
    "emoji 🙂👍🏽🇨🇳 and ZWJ 👩‍💻",
    "def f(x):\n    return {'a': [1, 2.5e-3]}  # 注释",
    "ÀÉÎõü ß Ωμέγα Привет مرحبا नमस्ते こんにちは 한국어",
    "\x00\x07\x1b[0m\ufeff\u200b\U0010ffff",
    "<think>reasoning</think> answer",
]


def _train(out_dir, *extra):
    main(["train", "--vocab_size", "512", "--out_dir", str(out_dir), "--corpus_mb", "0.3", *extra])
    return out_dir


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="module")
def small(small_dir):
    return load_tokenizer(small_dir)


@pytest.fixture(scope="module")
def shipped():
    return load_tokenizer()


def test_corpus_is_deterministic(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    n = write_corpus(a, seed=3, target_mb=0.2)
    main(["corpus", "--out", str(b), "--seed", "3", "--corpus_mb", "0.2"])
    assert a.read_bytes() == b.read_bytes() and n == len(a.read_bytes()) >= 200_000
    text = a.read_text(encoding="utf-8")
    assert "的" in text and " the " in text and "assistant\n" in text and " = " in text
    assert list(build_corpus(4, 0.05)) != list(build_corpus(3, 0.05))


def test_small_tokenizer_ids_and_size(small_dir, small):
    assert small.vocab_size == 512
    assert {t: small.token_to_id(t) for t in SPECIALS} == SPECIALS
    assert (small.token_to_id("<think>"), small.token_to_id("</think>")) == (3, 4)
    assert (small.pad_id, small.bos_id, small.eos_id, small.eos_ids) == (0, 1, 2, {0, 2})
    assert small.chat_template == CHATML_TEMPLATE
    assert {p.name for p in small_dir.iterdir()} == {
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    added = json.loads((small_dir / "tokenizer.json").read_text())["added_tokens"]
    assert [(t["id"], t["special"]) for t in added] == [
        (0, True),
        (1, True),
        (2, True),
        (3, False),
        (4, False),
    ]
    ids = small.encode("a<|im_start|>b<think>c<|im_end|>")
    assert ids.count(1) == ids.count(3) == ids.count(2) == 1
    assert small.decode(ids) == "ab<think>c"


def test_training_is_deterministic(tmp_path, small_dir):
    again = _train(tmp_path / "again")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (again / name).read_bytes() == (small_dir / name).read_bytes()
    other = _train(tmp_path / "other", "--seed", "1")
    assert (other / "tokenizer.json").read_bytes() != (small_dir / "tokenizer.json").read_bytes()


def test_train_on_txt_and_jsonl(tmp_path):
    docs = list(build_corpus(0, 0.15))
    txt, jsonl = tmp_path / "a.txt", tmp_path / "b.jsonl"
    txt.write_text("\n".join(docs[::2]) + "\n", encoding="utf-8")
    rows = [{"text": d} for d in docs[1::4]]
    rows += [
        {
            "conversations": [
                {"role": "user", "content": d},
                {"role": "assistant", "content": d[::-1]},
            ]
        }
        for d in docs[3::4]
    ]
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    main(
        [
            "train",
            "--data",
            f"{txt},{jsonl}",
            "--vocab_size",
            "400",
            "--out_dir",
            str(tmp_path / "tok"),
        ]
    )
    tok = load_tokenizer(tmp_path / "tok")
    assert tok.vocab_size == 400 and tok.token_to_id("<|im_end|>") == 2
    learned = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())["model"]["vocab"]
    merged = [t for t, i in learned.items() if i >= 5 and ("im_" in t or "|>" in t)]
    assert merged == []  # special tokens in the text are split out before training


def test_train_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        main(["train", "--data", str(tmp_path / "nope.txt"), "--out_dir", str(tmp_path / "t")])
    with pytest.raises(ValueError, match="at least 261"):
        main(["train", "--vocab_size", "100", "--out_dir", str(tmp_path / "t")])
    (tmp_path / "tiny.txt").write_text("abc abc abc\n")
    with pytest.raises(ValueError, match="fewer than --vocab_size 6400"):
        main(["train", "--data", str(tmp_path / "tiny.txt"), "--out_dir", str(tmp_path / "t")])
    assert not (tmp_path / "t").exists()


def _random_strings(n=30, seed=0):
    rng = random.Random(seed)
    pools = [(0x20, 0x7E), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF), (0x0, 0xD7FF), (0xE000, 0x10FFFF)]
    for _ in range(n):
        yield "".join(chr(rng.randint(*rng.choice(pools))) for _ in range(rng.randint(1, 40)))


@pytest.mark.parametrize("which", ["small", "shipped"])
def test_roundtrip(which, request):
    tok = request.getfixturevalue(which)
    texts = TEXTS + list(_random_strings())
    batch = tok.encode_batch(texts)
    for text, ids in zip(texts, batch, strict=True):
        assert ids == tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
    special = "<|im_start|>user\n你好<|im_end|>\n<|endoftext|>"
    assert tok.decode(tok.encode(special), skip_special_tokens=False) == special
    assert tok.decode(tok.encode(special)) == "user\n你好\n"


def test_shipped_tokenizer(shipped):
    assert shipped.path == DEFAULT_TOKENIZER_DIR and shipped.vocab_size == len(shipped) == 6400
    assert {t: shipped.token_to_id(t) for t in SPECIALS} == SPECIALS
    assert (shipped.pad_id, shipped.bos_id, shipped.eos_id, shipped.eos_ids) == (0, 1, 2, {0, 2})
    assert shipped.chat_template == CHATML_TEMPLATE
    zh, en = "人工智能是计算机科学的一个分支。", "The teacher said that we should read more books."
    assert len(shipped.encode(zh)) < len(zh) and len(shipped.encode(en)) < len(en) / 3


def test_chat_template_format(shipped):
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert shipped.apply_chat_template(msgs) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n"
    )
    assert shipped.apply_chat_template(msgs[:1], add_generation_prompt=True) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = shipped.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=True)
    assert ids[0] == 1 and ids.count(1) == 2 and ids.count(2) == 1


@pytest.mark.parametrize("which", ["small_dir", "shipped_dir"])
def test_matches_transformers(which, request, tmp_path):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    src = DEFAULT_TOKENIZER_DIR if which == "shipped_dir" else request.getfixturevalue(which)
    load_tokenizer(src).save(tmp_path)  # save() output must load the same way
    for path in (src, tmp_path):
        ours, hf = load_tokenizer(path), AutoTokenizer.from_pretrained(str(path))
        assert isinstance(hf, PreTrainedTokenizerFast) and len(hf) == ours.vocab_size
        assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id) == (0, 1, 2)
        for msgs in CONVERSATIONS:
            for gen in (False, True):
                text = ours.apply_chat_template(msgs, add_generation_prompt=gen)
                assert text == hf.apply_chat_template(
                    msgs, tokenize=False, add_generation_prompt=gen
                )
                hf_ids = hf.apply_chat_template(msgs, tokenize=True, add_generation_prompt=gen)
                hf_ids = hf_ids["input_ids"] if hasattr(hf_ids, "keys") else hf_ids
                assert ours.apply_chat_template(
                    msgs, add_generation_prompt=gen, tokenize=True
                ) == list(hf_ids)
        for text in TEXTS:
            assert ours.encode(text) == hf.encode(text, add_special_tokens=False)


def test_chat_mask_hand_computed(shipped):
    a1, a2 = "你好！有什么可以帮你？", "1 + 1 = 2。"
    msgs = [
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": a1},
        {"role": "user", "content": "1 + 1 等于几？"},
        {"role": "assistant", "content": a2},
    ]
    enc = shipped.encode
    head, nl = enc("<|im_start|>assistant\n"), enc("\n")
    assert head[0] == 1 and head[-1:] == nl
    u1, u2 = (
        enc("<|im_start|>user\n你好<|im_end|>\n"),
        enc("<|im_start|>user\n1 + 1 等于几？<|im_end|>\n"),
    )
    c1, c2 = enc(a1), enc(a2)
    want_ids = u1 + head + c1 + [2] + nl + u2 + head + c2 + [2] + nl
    want_mask = (
        [0] * (len(u1) + len(head))
        + [1] * (len(c1) + 1)
        + [0]
        + [0] * (len(u2) + len(head))
        + [1] * (len(c2) + 1)
        + [0]
    )
    ids, mask = chat_ids_and_mask(shipped, msgs)
    assert ids == want_ids == enc(shipped.apply_chat_template(msgs))
    assert mask == want_mask
    kept = shipped.decode(
        [i for i, m in zip(ids, mask, strict=True) if m], skip_special_tokens=False
    )
    assert kept == a1 + "<|im_end|>" + a2 + "<|im_end|>"


@pytest.mark.parametrize("which", ["small", "shipped"])
def test_chat_ids_equal_whole_encoding(which, request):
    tok = request.getfixturevalue(which)
    for msgs in CONVERSATIONS:
        ids, mask = chat_ids_and_mask(tok, msgs)
        assert ids == tok.encode(tok.apply_chat_template(msgs)) and len(mask) == len(ids)
        answers = [m["content"] for m in msgs if m["role"] == "assistant"]
        assert sum(mask) >= sum(len(tok.encode(a)) for a in answers) // 2 + len(answers)
        assert [i for i, m in zip(ids, mask, strict=True) if m].count(2) == len(answers)
        if not any(a[:1].isspace() for a in answers):
            kept = [i for i, m in zip(ids, mask, strict=True) if m]
            assert tok.decode(kept, skip_special_tokens=False) == "".join(
                a + "<|im_end|>" for a in answers
            )


def test_load_errors(tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match="--tokenizer_path") as e:
        load_tokenizer(missing)
    assert str(missing) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError) as e:
        load_tokenizer(tmp_path)
    assert str(tmp_path) in str(e.value)
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": ')
    with pytest.raises(ValueError) as e:
        load_tokenizer(tmp_path)
    assert str(tmp_path / "tokenizer.json") in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "tokenizer_config.json").write_text("{oops")
    with pytest.raises(ValueError, match="tokenizer_config.json"):
        load_tokenizer(tmp_path)


def test_transformers_fallback(small_dir, small, tmp_path):
    spec = json.loads((small_dir / "tokenizer.json").read_text(encoding="utf-8"))
    (tmp_path / "vocab.json").write_text(json.dumps(spec["model"]["vocab"]), encoding="utf-8")
    merges = "".join(f"{a} {b}\n" for a, b in spec["model"]["merges"])
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + merges, encoding="utf-8")
    cfg = json.loads((small_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg["tokenizer_class"] = "GPT2Tokenizer"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    tok = load_tokenizer(tmp_path)
    assert tok._hf is not None and tok.vocab_size == 512
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.eos_ids) == (0, 1, 2, {0, 2})
    for text in TEXTS[:7]:
        assert tok.encode(text) == small.encode(text) and tok.decode(tok.encode(text)) == text
    msgs = CONVERSATIONS[1]
    assert tok.apply_chat_template(msgs) == small.apply_chat_template(msgs)
    assert chat_ids_and_mask(tok, msgs) == chat_ids_and_mask(small, msgs)
