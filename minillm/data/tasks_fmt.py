"""Knowledge, sort, json and copy task generators: each returns `(subtype, prompt, answer, work, meta)`."""

from __future__ import annotations

import json
import random
import string

from .tasks_bank import BANK
from .tasks_pools import NAMES

Gen = tuple[str, str, str, str, dict]

_KQ = {
    "en": {
        "capital": ["What is the capital of {}?", "Which city is the capital of {}?", "Name the capital city of {}.", "{} has its capital in which city?"],
        "symbol": ["What is the chemical symbol of {}?", "Which symbol stands for the element {}?", "Give the element symbol for {}.", "How is {} written as a chemical symbol?"],
        "atomic": ["What is the atomic number of {}?", "How many protons are in one atom of {}?", "Which atomic number does {} have?", "What is the proton number of {}?"],
        "author": ["Who created {}?", "Who is the author or creator of {}?", "{} was created by whom?", "Whose work is {}?"],
        "misc": ["What is {}?", "Name {}.", "Can you tell me {}?", "Identify {}."],
    },
    "zh": {
        "capital": ["{}的首都是哪座城市？", "{}的首都是什么？", "请说出{}的首都。", "{}的首都位于哪里？"],
        "symbol": ["{}元素的化学符号是什么？", "哪个符号代表{}元素？", "请写出{}的元素符号。", "{}用哪个化学符号表示？"],
        "atomic": ["{}的原子序数是多少？", "一个{}原子有多少个质子？", "{}元素的原子序数是几？", "{}的质子数是多少？"],
        "author": ["《{}》的作者（创作者）是谁？", "谁创作了《{}》？", "《{}》出自谁之手？", "《{}》是谁的作品？"],
        "misc": ["{}是什么？", "请说出{}。", "你知道{}是什么吗？", "{}是？"],
    },
}  # fmt: skip
_KCTX = {
    "en": [
        "is preparing for a quiz", "is revising for an exam", "is playing a trivia game",
        "is writing a school report", "is checking a fact for a crossword", "is helping a younger sibling with homework",
        "is hosting a pub quiz", "is filling in a study card", "is settling a friendly bet",
        "is proofreading an encyclopedia entry", "is tutoring a classmate", "is making flashcards",
    ],
    "zh": [
        "正在准备一次知识竞赛", "正在复习考试", "在玩一个问答游戏", "在写学校的报告", "在做填字游戏时想核对一个事实",
        "在辅导弟弟妹妹做作业", "在主持一场知识问答", "在整理学习卡片", "和朋友打了个赌", "在校对百科词条",
        "在给同学补课", "在制作记忆卡片",
    ],
}  # fmt: skip
_KEND = {
    "en": ["", " Keep the answer short.", " Please be concise.", " A brief answer is enough."],
    "zh": ["", "请简短回答。", "简洁作答即可。", "给出答案即可。"],
}


def gen_knowledge(rng: random.Random, lang: str) -> Gen:
    i = rng.randrange(len(BANK))
    fact = BANK[i]
    subject, ans = fact[lang]
    q = rng.choice(_KQ[lang][fact["kind"]]).format(subject)
    if lang == "en":
        q = q[0].upper() + q[1:]
    if rng.random() < 0.97:
        who, ctx = rng.choice(NAMES[lang]), rng.choice(_KCTX[lang])
        q = f"{who} {ctx} and asks: {q}" if lang == "en" else f"{who}{ctx}，问道：{q}"
    q += rng.choice(_KEND[lang])
    work = f"{subject}: {ans}"
    return fact["kind"], q, ans, work, {"fact": i}


def gen_sort(rng: random.Random, lang: str) -> Gen:
    n = rng.randint(3, 20)
    hi = rng.choice([9, 99, 999, 9999])
    lo = -hi if rng.random() < 0.3 else 0
    xs = [rng.randint(lo, hi) for _ in range(n)]
    desc = rng.random() < 0.5
    out = sorted(xs, reverse=desc)
    shown = ", ".join(map(str, xs))
    if lang == "en":
        order = "descending" if desc else "ascending"
        q = rng.choice(
            [
                "Sort these numbers in {} order: {}",
                "Arrange in {} order: {}",
                "Put the following list in {} order: [{}]",
            ]
        )
        text = q.format(order, shown)
    else:
        order = "从大到小" if desc else "从小到大"
        q = rng.choice(
            ["把这些数{}排序：{}", "请将下列数字按{}的顺序排列：{}", "对列表 [{}] 按{}排序。"]
        )
        text = q.format(shown, order) if q.startswith("对") else q.format(order, shown)
    ans = ", ".join(map(str, out))
    return "desc" if desc else "asc", text, ans, ans, {"input": xs, "output": out}


_FIELDS = {
    "sum": (lambda a, b: a + b, "the sum of a and b", "a 与 b 的和"),
    "difference": (lambda a, b: a - b, "a minus b", "a 减 b 的差"),
    "product": (lambda a, b: a * b, "the product of a and b", "a 与 b 的积"),
    "max": (max, "the larger of a and b", "a 与 b 中较大的数"),
    "min": (min, "the smaller of a and b", "a 与 b 中较小的数"),
    "double_a": (lambda a, b: 2 * a, "twice a", "a 的两倍"),
    "square_b": (lambda a, b: b * b, "b squared", "b 的平方"),
    "remainder": (lambda a, b: a % b, "the remainder of a divided by b", "a 除以 b 的余数"),
}


def gen_json(rng: random.Random, lang: str) -> Gen:
    a, b = rng.randint(-50, 200), rng.randint(1, 60)
    keys = rng.sample(list(_FIELDS), rng.randint(2, 4))
    obj: dict = {}
    desc = []
    if rng.random() < 0.5:
        obj["name"] = rng.choice(NAMES[lang])
        desc.append(
            f'"name": the string {obj["name"]}' if lang == "en" else f'"name"：字符串 {obj["name"]}'
        )
    for k in keys:
        f, en, zh = _FIELDS[k]
        obj[k] = f(a, b)
        desc.append(f'"{k}": {en}' if lang == "en" else f'"{k}"：{zh}')
    if lang == "en":
        text = (
            f"Let a = {a} and b = {b}. Output a JSON object with exactly these keys: "
            + "; ".join(desc)
            + "."
        )
    else:
        text = (
            f"设 a = {a}，b = {b}。请输出一个 JSON 对象，恰好包含以下键：" + "；".join(desc) + "。"
        )
    ans = json.dumps(obj, ensure_ascii=False)
    return "fields", text, ans, f"a = {a}, b = {b}", {"object": obj}


_ZH_CHARS = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经"


def gen_copy(rng: random.Random, lang: str) -> Gen:
    n = rng.randint(6, 40)
    pool = string.ascii_letters + string.digits + "-_"
    if lang == "zh" and rng.random() < 0.5:
        pool = _ZH_CHARS
        n = rng.randint(4, 20)
    s = "".join(rng.choice(pool) for _ in range(n))
    if lang == "en":
        q = rng.choice(
            [
                "Copy this string exactly: {}",
                "Repeat the following text verbatim: {}",
                "Echo back exactly: {}",
            ]
        )
    else:
        q = rng.choice(
            [
                "请原样复制这个字符串：{}",
                "逐字重复下面的文本：{}",
                "把下面内容一字不差地抄写一遍：{}",
            ]
        )
    return "string", q.format(s), s, f"{len(s)} characters", {"text": s}
