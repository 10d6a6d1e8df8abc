"""GSM8K loading, answer extraction, rewards and the synthetic arithmetic set (hermetic)."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minillm.data.gsm8k import (
    GSM8K_REPO,
    SPLIT_FILES,
    extract_answer,
    has_format,
    load_gsm8k,
    make_arithmetic_set,
    make_sums_set,
    prompt_messages,
    reward,
    same_number,
    sft_record,
)
from tests.fakehub import running_hub

# Real GSM8K answers (train/test), copied verbatim.
REAL = [
    (
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
        "72",
    ),
    (
        "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n"
        "Working 50 minutes, she earned 0.2 x 50 = $<<0.2*50=10>>10.\n#### 10",
        "10",
    ),
    (
        "Start = +<<2=2>>2 degrees\nDrop 8 degrees = 2 - 8 = -6 degrees\n"
        "Increase 3 degrees = -6 + 3 = -3 degrees\n"
        "It was -3 degrees Celsius in the morning.\n#### -3",
        "-3",
    ),
    (
        "-14 + (-8) + 1 = <<-14+-8+1=-21>>-21 degrees Fahrenheit\n"
        "-21/3 = <<-21/3=-7>>-7 degrees Fahrenheit\n"
        "The average temperature was -7 degrees Fahrenheit.\n#### -7",
        "-7",
    ),
    (
        "It cost 20000*2=$<<20000*2=40000>>40,000 a year\n"
        "So it cost 40,000*13=$<<40000*13=520000>>520,000\n#### 520,000",
        "520000",
    ),
    (
        "The number of seats sold was 0.75*60,000=<<0.75*60000=45000>>45,000.\n"
        "And 45,000-5,000=<<45000-5000=40000>>40,000.\n#### 40,000",
        "40000",
    ),
    ("Bucks:50(.50)=25\n8 Points:25(.20)=5 bucks\n#### 5", "5"),
    ("Scottish Unicorns:27(1/3)=9\nFemale:9(2/3)=6 unicorns\n#### 6", "6"),
    ("Ruins:220(.40)=88\nUnmanned:88/2=<<88/2=44>>44 castles\n#### 44", "44"),
    ("Golf Balls:16/2=<<16/2=8>>8\nBlue Golf Balls:8/2=<<8/2=4>>4 balls\n#### 4", "4"),
]


@pytest.mark.parametrize("text,want", REAL)
def test_extract_real_gsm8k(text, want):
    assert extract_answer(text) == want
    assert has_format(text)
    # without the #### line, the last number in the text is the fallback
    assert extract_answer(text.rsplit("\n####", 1)[0]) == want


@pytest.mark.parametrize(
    "text,want",
    [
        ("#### 2.50", "2.5"),
        ("#### 3.0", "3"),
        ("#### $1,234.50", "1234.5"),
        ("#### -12", "-12"),
        ("#### 75%", "75"),
        ("so the total is 18.\n#### 18 dollars", "18"),
        ("It is 4. Then \\boxed{7}.", "7"),
        ("\\boxed{\\text{1,200 apples}}", "1200"),
        ("x = 3 so \\boxed{x = 5}", "5"),
        ("5 and \\boxed{6}\n#### 9", "9"),  # #### beats \boxed
        ("Answer: 12 and \\boxed{13}", "13"),  # \boxed beats Answer:
        ("计算 3 + 4 = 7。\n答案：7", "7"),
        ("答案: 42 个\n附注：共 3 人", "42"),  # the answer line beats the last number
        ("Answer: $1,000", "1000"),
        ("Final answer: 3 + 4 = 7 apples", "7"),
        ("The answer is -0.50.", "-0.5"),
        ("He has 3 apples, then 10 more, 13 in all.", "13"),
        ("5 - 3 leaves 2", "2"),
        ("Total: 45,000-5,000=40,000", "40000"),
        ("<think>#### 99 hmm maybe 98</think>So it is 12 apples.", "12"),
        ("<think>\\boxed{5}</think>\n#### 6", "6"),
        ("reasoning 77 </think> Answer: 8", "8"),
        ("<think>unfinished 5", None),
        ("no number at all", None),
        ("", None),
        ("####\nthe result is 3", "3"),
    ],
)
def test_extract_cases(text, want):
    assert extract_answer(text) == want


def test_has_format_and_reward():
    assert has_format("#### 5") and has_format("\\boxed{5}") and has_format("答案：5")
    assert has_format("Answer: 5") and has_format("答案: 5")
    assert not has_format("the result is 5") and not has_format("#### none")
    assert not has_format("<think>#### 5</think> it is 5")
    assert reward("3 + 4 = 7\n#### 7", "7") == 1.0
    assert reward("3 + 4 = 7\n#### 7", "7", format_weight=0.1) == pytest.approx(1.1)
    assert reward("it is 7", "7", format_weight=0.1) == 1.0
    assert reward("#### 8", "7", format_weight=0.1) == pytest.approx(0.1)
    assert reward("#### 8", "7") == 0.0
    assert reward("nothing", "7", format_weight=0.5) == 0.0
    assert reward("#### 1,234.0", "1234") == 1.0


def test_same_number():
    assert same_number("1,234", "1234") and same_number("2.50", "2.5")
    assert same_number("1000000", "1000000.0000001")
    assert not same_number("1000", "1001") and not same_number("-3", "3")
    assert not same_number(None, "3") and not same_number("abc", "3")


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def write_parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


ROWS = [{"question": f"Q{i}: what is {i} + 1?", "answer": t} for i, (t, _) in enumerate(REAL)]


def test_load_jsonl_and_parquet(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", ROWS[:4])
    write_parquet(tmp_path / "b.parquet", ROWS[4:])
    recs = load_gsm8k(f"{tmp_path}/a.jsonl, {tmp_path}/b.parquet")
    assert [r["target"] for r in recs] == [w for _, w in REAL]
    assert recs[0] == {"question": ROWS[0]["question"], "answer": REAL[0][0], "target": "72"}
    assert len(load_gsm8k(f"{tmp_path}/a.jsonl,{tmp_path}/b.parquet", limit=6)) == 6
    assert len(load_gsm8k(f"{tmp_path}/b.parquet", limit=2)) == 2


def test_bad_input_names_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.jsonl: no such file.*gsm8k:train"):
        load_gsm8k(str(tmp_path / "missing.jsonl"))
    with pytest.raises(FileNotFoundError):
        load_gsm8k(str(tmp_path / "missing.parquet"), skip_bad=True)

    good = ROWS[0]
    cases = [
        ("{not json", "bad json"),
        ('["a list"]', "not an object"),
        ({"question": "q"}, "missing question/answer"),
        ({"question": "", "answer": "#### 3"}, "missing question/answer"),
        ({"question": "q", "answer": "no number here"}, "no final number"),
    ]
    for i, (row, kind) in enumerate(cases):
        p = tmp_path / f"bad{i}.jsonl"
        write_jsonl(p, [good, good, row])
        with pytest.raises(ValueError) as e:
            load_gsm8k(str(p))
        msg = str(e.value)
        assert msg.startswith(f"{p}:3: {kind}") and "skip_bad=True" in msg and "\n" not in msg

    p = tmp_path / "bad.parquet"
    write_parquet(p, [good, {"question": "q", "answer": "none"}])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(p))}:row 2: no final number"):
        load_gsm8k(str(p))
    write_parquet(tmp_path / "cols.parquet", [{"question": "q", "solution": "#### 1"}])
    with pytest.raises(ValueError, match="missing column.*answer"):
        load_gsm8k(str(tmp_path / "cols.parquet"))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"junk\.parquet: not a readable parquet file"):
        load_gsm8k(str(tmp_path / "junk.parquet"))
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="unknown file type"):
        load_gsm8k(str(tmp_path / "x.csv"))
    with pytest.raises(ValueError, match="unknown split"):
        load_gsm8k("gsm8k:dev")


def test_skip_bad_counts(tmp_path):
    p = tmp_path / "mixed.jsonl"
    write_jsonl(
        p,
        [ROWS[0], "{oops", {"answer": "#### 1"}, "", ROWS[1], {"question": "q", "answer": "x"}],
    )
    write_parquet(tmp_path / "m.parquet", [ROWS[2], {"question": None, "answer": "#### 2"}])
    skipped: dict = {}
    recs = load_gsm8k(f"{p},{tmp_path}/m.parquet", skip_bad=True, skipped=skipped)
    assert [r["target"] for r in recs] == ["72", "10", "-3"]
    assert skipped == {"bad json": 1, "missing question/answer": 2, "no final number": 1}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with running_hub(GSM8K_REPO, tmp_path, monkeypatch) as srv:
        yield srv


def test_hub_download_and_cache(hub, tmp_path):
    src = tmp_path / "src.parquet"
    write_parquet(src, ROWS[:3])
    hub.files[SPLIT_FILES["train"]] = src.read_bytes()
    data_dir = tmp_path / "gsm8k"
    kw = dict(data_dir=str(data_dir), hf_endpoint=hub.url, progress=False)
    recs = load_gsm8k("gsm8k:train", **kw)
    assert [r["target"] for r in recs] == ["72", "10", "-3"]
    assert (data_dir / "main" / "train-00000-of-00001.parquet").read_bytes() == src.read_bytes()
    assert any(m == "GET" for m, _ in hub.log)
    n = len(hub.log)
    assert load_gsm8k("gsm8k:train", **kw, limit=2) == recs[:2]
    assert len(hub.log) == n  # cached: no request at all

    with pytest.raises(FileNotFoundError, match=r"gsm8k:test.*not found.*HF_ENDPOINT"):
        load_gsm8k("gsm8k:test", **kw)
    with pytest.raises(ValueError, match="max_download_mb"):
        load_gsm8k("gsm8k:train", **kw, max_download_mb=1e-6, force_download=True)


def check_arith(rec):
    assert rec["target"] == extract_answer(rec["answer"])
    assert rec["answer"].endswith(f"\n#### {rec['target']}")
    annots = re.findall(r"<<([^<>=]+)=(-?\d+)>>", rec["answer"])
    assert annots
    for expr, val in annots:
        assert re.fullmatch(r"\d+[-+*]\d+", expr)
        assert eval(expr) == int(val)  # noqa: S307 - digits and one operator, checked above
    assert int(annots[-1][1]) == int(rec["target"]) >= 0
    for num in re.findall(r"\d+", rec["question"]):
        assert int(num) < 100


@pytest.mark.parametrize("kind", ["add", "mixed"])
def test_arithmetic_set(kind):
    a = make_arithmetic_set(2000, seed=1, kind=kind)
    assert a == make_arithmetic_set(2000, seed=1, kind=kind)
    assert a != make_arithmetic_set(2000, seed=2, kind=kind)
    assert len(a) == 2000
    assert len({r["question"] for r in a}) >= 1800
    for rec in a:
        check_arith(rec)
    ops = {op for r in a for op in re.findall(r"<<\d+([-+*])", r["answer"])}
    assert ops == ({"+"} if kind == "add" else {"+", "-", "*"})
    with pytest.raises(ValueError, match="unknown arithmetic kind"):
        make_arithmetic_set(3, 0, kind="div")


def test_prompt_and_sft_record():
    msgs = prompt_messages("What is 2 + 3?")
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "####" in msgs[0]["content"] and "step by step" in msgs[0]["content"]
    assert msgs[1]["content"] == "What is 2 + 3?"
    assert "####" in prompt_messages("2+3?", lang="zh")[0]["content"]
    with pytest.raises(ValueError, match="unknown lang"):
        prompt_messages("q", lang="fr")

    rec = {"question": "Q", "answer": REAL[5][0], "target": "40000"}
    conv = sft_record(rec)["conversations"]
    assert [t["role"] for t in conv] == ["system", "user", "assistant"]
    assert conv[:2] == prompt_messages("Q")
    text = conv[2]["content"]
    assert "<<" not in text and ">>" not in text
    assert text.endswith("\n#### 40000") and text.count("####") == 1
    assert "0.75*60,000=45,000." in text
    assert extract_answer(text) == "40000"
    for r in make_arithmetic_set(20, 0, "mixed"):
        out = sft_record(r)["conversations"][2]["content"]
        assert "<<" not in out and out.endswith(f"#### {r['target']}")


def test_sums_set_is_seeded_well_formed_and_covers_every_answer():
    recs = make_sums_set(500, seed=3)
    assert recs == make_sums_set(500, seed=3) and recs != make_sums_set(500, seed=4)
    finals = [extract_answer(r["answer"]) for r in recs]
    assert sorted({int(f) for f in finals}) == list(range(10))
    for r, f in zip(recs, finals, strict=True):
        a, b = (int(x) for x in r["answer"].split(" = ")[0].split(" + "))
        assert (
            a + b == int(f) and f"has {a} " in r["question"] and f"gets {b} more" in r["question"]
        )
        assert reward(r["answer"], f) == 1.0
