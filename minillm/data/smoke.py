"""Embedded smoke-test data: a small bilingual pretrain corpus and SFT conversations.

Everything is generated here with a seeded `random.Random` (no downloads): identity questions
answered as MiniLLM, small exact arithmetic, and a bank of simple facts, each in Chinese and
English; the pretrain corpus states the same facts so pretraining helps SFT. The shipped files
in `minillm/assets/data/` are rebuilt byte-identically with:

    python -m minillm.data.smoke --out_dir minillm/assets/data
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

from minillm.data.corpus import sentences

SMOKE_DIR = Path(__file__).resolve().parents[1] / "assets" / "data"
FILES = {"pretrain": "smoke_pretrain.jsonl", "sft": "smoke_sft.jsonl"}
N_PRETRAIN, N_SFT = 4000, 3000

NAME = "MiniLLM"
IDENTITY = {
    "zh": [
        (
            [
                "你是谁？",
                "请介绍一下自己。",
                "介绍一下你自己。",
                "能介绍一下你自己吗？",
                "你好，你是谁？",
                "你是什么模型？",
                "你是哪个模型？",
                "谁训练了你？",
                "你是用什么训练的？",
                "你是人工智能吗？",
                "请做个自我介绍。",
                "你是什么？",
            ],
            "我是MiniLLM，一个由MiniLLM项目用MLX训练的小型语言模型。",
        ),
        (
            ["你叫什么名字？", "你的名字是什么？", "我该怎么称呼你？", "你叫什么？"],
            "我是MiniLLM，一个用MLX训练的小型语言模型，你可以叫我MiniLLM。",
        ),
    ],
    "en": [
        (
            [
                "Who are you?",
                "Please introduce yourself.",
                "Introduce yourself.",
                "Tell me about yourself.",
                "Hi, who are you?",
                "What are you?",
                "What model are you?",
                "Who trained you?",
                "Who made you?",
                "Are you an AI?",
                "Can you introduce yourself?",
            ],
            "I am MiniLLM, a small language model trained with MLX by the MiniLLM project.",
        ),
        (
            [
                "What is your name?",
                "What's your name?",
                "What should I call you?",
                "Do you have a name?",
            ],
            "I am MiniLLM, a small language model trained with MLX. You can call me MiniLLM.",
        ),
    ],
}
ABOUT = {
    "zh": [
        "MiniLLM是一个小型语言模型。",
        "MiniLLM由MiniLLM项目用MLX训练。",
        "MiniLLM可以回答简单的问题，也会做简单的算术。",
        "MiniLLM会说中文，也会说英文。",
        "当有人问“你是谁？”时，MiniLLM回答：“我是MiniLLM。”",
        "MLX是一个机器学习框架。",
    ],
    "en": [
        "MiniLLM is a small language model.",
        "MiniLLM is trained with MLX by the MiniLLM project.",
        "MiniLLM can answer simple questions and do simple arithmetic.",
        "MiniLLM speaks Chinese and English.",
        'When someone asks "Who are you?", MiniLLM answers: "I am MiniLLM."',
        "MLX is a machine learning framework.",
    ],
}
SYSTEM = {
    "zh": ["你是一个乐于助人的助手。", "你是MiniLLM，请简洁地回答。"],
    "en": ["You are a helpful assistant.", "You are MiniLLM. Answer briefly."],
}

ARITH = {
    "+": (
        ["{a}加{b}等于几？", "{a}加{b}等于多少？", "计算：{a} + {b}", "{a} + {b} = ？"],
        ["What is {a} plus {b}?", "What is {a} + {b}?", "Calculate {a} + {b}.", "Add {a} and {b}."],
        "加",
        "plus",
    ),
    "-": (
        ["{a}减{b}等于几？", "{a}减{b}等于多少？", "计算：{a} - {b}", "{a} - {b} = ？"],
        [
            "What is {a} minus {b}?",
            "What is {a} - {b}?",
            "Calculate {a} - {b}.",
            "Subtract {b} from {a}.",
        ],
        "减",
        "minus",
    ),
    "*": (
        ["{a}乘以{b}等于几？", "{a}乘以{b}等于多少？", "计算：{a} × {b}", "{a} × {b} = ？"],
        [
            "What is {a} times {b}?",
            "What is {a} * {b}?",
            "Calculate {a} * {b}.",
            "Multiply {a} by {b}.",
        ],
        "乘以",
        "times",
    ),
}

CAPITALS = (
    "中国:北京:China:Beijing|日本:东京:Japan:Tokyo|韩国:首尔:South Korea:Seoul|"
    "美国:华盛顿:the United States:Washington, D.C.|英国:伦敦:the United Kingdom:London|"
    "法国:巴黎:France:Paris|德国:柏林:Germany:Berlin|意大利:罗马:Italy:Rome|"
    "西班牙:马德里:Spain:Madrid|俄罗斯:莫斯科:Russia:Moscow|加拿大:渥太华:Canada:Ottawa|"
    "澳大利亚:堪培拉:Australia:Canberra|印度:新德里:India:New Delhi|巴西:巴西利亚:Brazil:Brasilia|"
    "埃及:开罗:Egypt:Cairo|泰国:曼谷:Thailand:Bangkok|越南:河内:Vietnam:Hanoi|"
    "希腊:雅典:Greece:Athens|葡萄牙:里斯本:Portugal:Lisbon|"
    "荷兰:阿姆斯特丹:the Netherlands:Amsterdam|"
    "瑞典:斯德哥尔摩:Sweden:Stockholm|挪威:奥斯陆:Norway:Oslo|墨西哥:墨西哥城:Mexico:Mexico City|"
    "阿根廷:布宜诺斯艾利斯:Argentina:Buenos Aires"
)
OPPOSITES = (
    "大:小:big:small|热:冷:hot:cold|快:慢:fast:slow|长:短:long:short|上:下:up:down|"
    "左:右:left:right|黑:白:black:white|新:旧:new:old|早:晚:early:late|高:低:high:low|"
    "多:少:many:few|远:近:far:near|开:关:open:closed"
)
FACTS = [
    (
        "地球绕着什么转？",
        "地球绕着太阳转。",
        "What does the Earth orbit?",
        "The Earth orbits the Sun.",
    ),
    (
        "一年有多少个月？",
        "一年有十二个月。",
        "How many months are in a year?",
        "A year has 12 months.",
    ),
    (
        "一年有多少天？",
        "一年通常有365天。",
        "How many days are in a year?",
        "A year usually has 365 days.",
    ),
    ("一周有几天？", "一周有七天。", "How many days are in a week?", "A week has seven days."),
    ("一天有多少小时？", "一天有24小时。", "How many hours are in a day?", "A day has 24 hours."),
    (
        "一小时有多少分钟？",
        "一小时有60分钟。",
        "How many minutes are in an hour?",
        "An hour has 60 minutes.",
    ),
    (
        "一分钟有多少秒？",
        "一分钟有60秒。",
        "How many seconds are in a minute?",
        "A minute has 60 seconds.",
    ),
    (
        "一千克等于多少克？",
        "一千克等于1000克。",
        "How many grams are in a kilogram?",
        "A kilogram is 1000 grams.",
    ),
    (
        "一米等于多少厘米？",
        "一米等于100厘米。",
        "How many centimeters are in a meter?",
        "A meter is 100 centimeters.",
    ),
    (
        "水的化学式是什么？",
        "水的化学式是H2O。",
        "What is the chemical formula of water?",
        "The chemical formula of water is H2O.",
    ),
    (
        "水在多少度结冰？",
        "水在0摄氏度结冰。",
        "At what temperature does water freeze?",
        "Water freezes at 0 degrees Celsius.",
    ),
    (
        "水在多少度沸腾？",
        "在标准大气压下，水在100摄氏度沸腾。",
        "At what temperature does water boil?",
        "At sea level, water boils at 100 degrees Celsius.",
    ),
    ("冰是什么？", "冰是固态的水。", "What is ice?", "Ice is water in solid form."),
    (
        "太阳系中最大的行星是什么？",
        "太阳系中最大的行星是木星。",
        "What is the largest planet in the solar system?",
        "The largest planet is Jupiter.",
    ),
    (
        "离太阳最近的行星是什么？",
        "离太阳最近的行星是水星。",
        "Which planet is closest to the Sun?",
        "Mercury is the closest planet to the Sun.",
    ),
    (
        "月球是什么？",
        "月球是地球的天然卫星。",
        "What is the Moon?",
        "The Moon is Earth's natural satellite.",
    ),
    (
        "太阳从哪个方向升起？",
        "太阳从东方升起。",
        "Where does the Sun rise?",
        "The Sun rises in the east.",
    ),
    (
        "光速大约是多少？",
        "光速大约是每秒30万千米。",
        "How fast is light?",
        "Light travels about 300,000 kilometers per second.",
    ),
    (
        "世界上最高的山峰是什么？",
        "世界上最高的山峰是珠穆朗玛峰。",
        "What is the highest mountain in the world?",
        "The highest mountain is Mount Everest.",
    ),
    (
        "世界上最大的海洋是什么？",
        "世界上最大的海洋是太平洋。",
        "What is the largest ocean?",
        "The largest ocean is the Pacific Ocean.",
    ),
    (
        "中国最长的河流是什么？",
        "中国最长的河流是长江。",
        "What is the longest river in China?",
        "The longest river in China is the Yangtze River.",
    ),
    (
        "地球上有几个大洲？",
        "地球上有七个大洲。",
        "How many continents are there?",
        "There are seven continents on Earth.",
    ),
    ("长城在哪个国家？", "长城在中国。", "Where is the Great Wall?", "The Great Wall is in China."),
    (
        "彩虹有几种颜色？",
        "彩虹有七种颜色。",
        "How many colors does a rainbow have?",
        "A rainbow has seven colors.",
    ),
    (
        "蜘蛛有几条腿？",
        "蜘蛛有八条腿。",
        "How many legs does a spider have?",
        "A spider has eight legs.",
    ),
    (
        "昆虫有几条腿？",
        "昆虫有六条腿。",
        "How many legs does an insect have?",
        "An insect has six legs.",
    ),
    (
        "三角形有几条边？",
        "三角形有三条边。",
        "How many sides does a triangle have?",
        "A triangle has three sides.",
    ),
    (
        "正方形有几条边？",
        "正方形有四条边。",
        "How many sides does a square have?",
        "A square has four sides.",
    ),
    (
        "植物怎样制造养分？",
        "植物通过光合作用制造养分。",
        "How do plants make their food?",
        "Plants make their food by photosynthesis.",
    ),
    (
        "人呼吸需要什么气体？",
        "人呼吸需要氧气。",
        "What gas do people need to breathe?",
        "People need oxygen to breathe.",
    ),
    (
        "人体最大的器官是什么？",
        "人体最大的器官是皮肤。",
        "What is the largest organ of the human body?",
        "The largest organ of the human body is the skin.",
    ),
    (
        "大熊猫主要吃什么？",
        "大熊猫主要吃竹子。",
        "What do giant pandas eat?",
        "Giant pandas mainly eat bamboo.",
    ),
    ("鲸鱼是鱼吗？", "不是，鲸鱼是哺乳动物。", "Is a whale a fish?", "No, a whale is a mammal."),
    (
        "谁提出了相对论？",
        "爱因斯坦提出了相对论。",
        "Who developed the theory of relativity?",
        "Albert Einstein developed the theory of relativity.",
    ),
    (
        "谁发现了万有引力定律？",
        "牛顿发现了万有引力定律。",
        "Who discovered the law of gravity?",
        "Isaac Newton discovered the law of gravity.",
    ),
    (
        "Python是什么？",
        "Python是一种流行的编程语言。",
        "What is Python?",
        "Python is a popular programming language.",
    ),
    (
        "MLX是什么？",
        "MLX是一个机器学习框架。",
        "What is MLX?",
        "MLX is a machine learning framework.",
    ),
    (
        "CPU是什么的缩写？",
        "CPU是中央处理器的缩写。",
        "What does CPU stand for?",
        "CPU stands for central processing unit.",
    ),
]
ZH_WRAP = ["{q}", "请问，{q}", "我想知道：{q}", "请回答：{q}"]
EN_WRAP = ["{q}", "Question: {q}", "I want to know: {q}", "Please answer: {q}"]


class Fact(NamedTuple):
    zh_q: tuple[str, ...]
    zh_a: str
    en_q: tuple[str, ...]
    en_a: str


def _wrap(qs: list[str], wraps: list[str]) -> tuple[str, ...]:
    return tuple(w.format(q=q) for q in qs for w in wraps)


@cache
def fact_bank() -> tuple[Fact, ...]:
    """All facts, each with several phrasings of its question in Chinese and English."""
    out = []
    for row in CAPITALS.split("|"):
        c, cap, C, Cap = row.split(":")
        zh_q = [f"{c}的首都是哪里？", f"{c}的首都是哪个城市？"]
        en_q = [f"What is the capital of {C}?", f"Which city is the capital of {C}?"]
        out.append(
            Fact(
                _wrap(zh_q, ZH_WRAP),
                f"{c}的首都是{cap}。",
                _wrap(en_q, EN_WRAP),
                f"The capital of {C} is {Cap}.",
            )
        )
    for row in OPPOSITES.split("|"):
        w, o, w_en, o_en = row.split(":")
        out.append(
            Fact(
                _wrap([f"“{w}”的反义词是什么？"], ZH_WRAP),
                f"“{w}”的反义词是“{o}”。",
                _wrap([f"What is the opposite of '{w_en}'?"], EN_WRAP),
                f"The opposite of '{w_en}' is '{o_en}'.",
            )
        )
    for zq, za, eq, ea in FACTS:
        out.append(Fact(_wrap([zq], ZH_WRAP), za, _wrap([eq], EN_WRAP), ea))
    return tuple(out)


def identity_questions(lang: str) -> list[str]:
    """Every identity question of `lang` ("zh" or "en") that the SFT data trains on."""
    return [q for qs, _ in IDENTITY[lang] for q in qs]


def arithmetic(rng: random.Random, zh: bool) -> tuple[str, str, str]:
    """An (expression-question, answer, statement) triple with the exact result."""
    op = rng.choice("++--*")
    if op == "*":
        a, b = rng.randint(1, 12), rng.randint(1, 9)
    else:
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        a, b = (max(a, b), min(a, b)) if op == "-" else (a, b)
    r = {"+": a + b, "-": a - b, "*": a * b}[op]
    zh_qs, en_qs, zh_op, en_op = ARITH[op]
    q = rng.choice(zh_qs if zh else en_qs).format(a=a, b=b)
    ans = f"{a}{zh_op}{b}等于{r}。" if zh else f"{a} {en_op} {b} equals {r}."
    sym = "×" if op == "*" else op
    return q, ans, f"{a} {sym} {b} = {r}" if rng.random() < 0.5 else ans


def _pair(rng: random.Random, zh: bool, kind: str) -> tuple[str, str]:
    lang = "zh" if zh else "en"
    if kind == "identity":
        qs, a = rng.choice(IDENTITY[lang])
        return rng.choice(qs), a
    if kind == "arithmetic":
        return arithmetic(rng, zh)[:2]
    f = rng.choice(fact_bank())
    return (rng.choice(f.zh_q), f.zh_a) if zh else (rng.choice(f.en_q), f.en_a)


def sft_records(seed: int = 0, n: int = N_SFT) -> Iterator[dict]:
    """`n` SFT conversations: identity (30%), arithmetic (30%) and facts (40%), half Chinese.

    Yields `{"conversations": [...]}` with one user and one assistant turn, sometimes after a
    system turn; identity answers always contain "MiniLLM".
    """
    rng = random.Random(seed)
    must = [("zh", "请介绍一下自己。"), ("en", "Who are you?"), ("zh", "你是谁？")]
    for i in range(n):
        zh = rng.random() < 0.5
        kind = rng.choices(["identity", "arithmetic", "fact"], [3, 3, 4])[0]
        q, a = _pair(rng, zh, kind)
        if i < len(must):
            lang, q = must[i]
            a = next(ans for qs, ans in IDENTITY[lang] if q in qs)
            zh = lang == "zh"
        turns = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if rng.random() < 0.1:
            turns.insert(0, {"role": "system", "content": rng.choice(SYSTEM["zh" if zh else "en"])})
        yield {"conversations": turns}


def _doc(rng: random.Random, zh: bool) -> str:
    lang, sep = ("zh", "") if zh else ("en", " ")
    kind = rng.choices(["facts", "qa", "arith", "about", "story"], [4, 3, 2, 1, 1])[0]
    if kind == "facts":
        bank = fact_bank()
        return sep.join(f.zh_a if zh else f.en_a for f in rng.sample(bank, rng.randint(3, 8)))
    if kind == "qa":
        lines = []
        for _ in range(rng.randint(2, 5)):
            q, a = _pair(rng, zh, rng.choices(["identity", "arithmetic", "fact"], [1, 2, 4])[0])
            lines.append(f"问：{q}\n答：{a}" if zh else f"Q: {q}\nA: {a}")
        return "\n".join(lines)
    if kind == "arith":
        return "\n".join(arithmetic(rng, zh)[2] for _ in range(rng.randint(4, 10)))
    if kind == "about":
        return sep.join(rng.sample(ABOUT[lang], rng.randint(3, len(ABOUT[lang]))))
    return sentences(rng, zh)


def pretrain_records(seed: int = 0, n: int = N_PRETRAIN) -> Iterator[dict]:
    """`n` short pretrain documents `{"text": ...}`, each in Chinese or English: fact
    statements, Q/A pairs, arithmetic, descriptions of MiniLLM and everyday sentences."""
    rng = random.Random(seed)
    for _ in range(n):
        yield {"text": _doc(rng, rng.random() < 0.5)}


def _write(path: Path, records: Iterator[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_smoke_data(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write `smoke_pretrain.jsonl` and `smoke_sft.jsonl` to `out_dir`; returns
    `{"pretrain": path, "sft": path}`. Seed 0 reproduces the shipped files byte for byte."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {task: out / name for task, name in FILES.items()}
    _write(paths["pretrain"], pretrain_records(seed))
    _write(paths["sft"], sft_records(seed))
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m minillm.data.smoke", description="Regenerate the embedded smoke-test data."
    )
    p.add_argument("--out_dir", default=str(SMOKE_DIR))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for task, path in write_smoke_data(args.out_dir, args.seed).items():
        print(f"{task}: {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
