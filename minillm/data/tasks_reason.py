"""Math, logic and multi-hop task generators: each returns `(subtype, prompt, answer, work, meta)`."""

from __future__ import annotations

import math
import random

from .tasks_pools import CONTAINERS, ITEMS, OBJECTS, ORDER_RELATIONS, ROLES, ROOMS, article, names

Gen = tuple[str, str, str, str, dict]


def _arith(rng: random.Random, lang: str) -> Gen:
    n = rng.randint(2, 4)
    nums = [rng.randint(-20, 99) if i else rng.randint(1, 999) for i in range(n)]
    expr = str(nums[0])
    for x in nums[1:]:
        op = rng.choice("+-*") if abs(x) < 30 else rng.choice("+-")
        expr += f" {op} " + (f"({x})" if x < 0 else str(x))
    if n > 2 and rng.random() < 0.4:
        expr = f"({expr.rsplit(' ', 2)[0]}) {expr.rsplit(' ', 2)[1]} {expr.rsplit(' ', 2)[2]}"
    val = eval(expr, {"__builtins__": {}})  # noqa: S307 - our own digits and operators
    q = rng.choice(
        ["Compute {}.", "What is {}?", "Evaluate the expression {}.", "Calculate: {}"]
        if lang == "en"
        else ["计算 {}。", "{} 等于多少？", "求表达式 {} 的值。", "请算出：{}"]
    )
    return "arith", q.format(expr), str(val), f"{expr} = {val}", {"expr": expr, "value": val}


def _gcdlcm(rng: random.Random, lang: str) -> Gen:
    g = rng.randint(2, 30)
    a, b = g * rng.randint(1, 40), g * rng.randint(1, 40)
    kind = rng.choice(["gcd", "lcm"])
    val = math.gcd(a, b) if kind == "gcd" else math.lcm(a, b)
    if lang == "en":
        name = "greatest common divisor" if kind == "gcd" else "least common multiple"
        q = rng.choice(
            [
                "What is the {} of {} and {}?",
                "Find the {} of {} and {}.",
                "Compute the {} of {} and {}.",
            ]
        )
        work = f"gcd({a}, {b}) = {math.gcd(a, b)}" + (
            f", lcm = {a}*{b}/gcd = {val}" if kind == "lcm" else ""
        )
    else:
        name = "最大公约数" if kind == "gcd" else "最小公倍数"
        q = rng.choice(
            ["{1} 和 {2} 的{0}是多少？", "求 {1} 与 {2} 的{0}。", "计算 {1} 和 {2} 的{0}。"]
        )
        work = f"gcd({a}, {b}) = {math.gcd(a, b)}" + (
            f"，最小公倍数 = {a}×{b}/gcd = {val}" if kind == "lcm" else ""
        )
    return kind, q.format(name, a, b), str(val), work, {"a": a, "b": b, "value": val}


def _linear(rng: random.Random, lang: str) -> Gen:
    x = rng.randint(-50, 50)
    a = rng.choice([i for i in range(-15, 16) if i not in (0, 1)])
    b = rng.randint(-99, 99)
    c = a * x + b
    var = rng.choice("xyzn")
    eq = f"{a}{var} {'+' if b >= 0 else '-'} {abs(b)} = {c}"
    q = rng.choice(
        ["Solve for {v}: {e}", "Find {v} if {e}.", "What value of {v} satisfies {e}?"]
        if lang == "en"
        else ["解方程：{e}，求 {v}。", "已知 {e}，{v} 等于多少？", "求满足 {e} 的 {v}。"]
    )
    work = f"{a}{var} = {c} - ({b}) = {c - b}, {var} = {c - b}/{a} = {x}"
    return "linear", q.format(v=var, e=eq), str(x), work, {"a": a, "b": b, "c": c, "value": x}


def _word(rng: random.Random, lang: str) -> Gen:
    p, q = names(rng, lang, 2)
    en, zh, _ = rng.choice(ITEMS)
    t = rng.randrange(4)
    if t == 0:
        n, price, extra = rng.randint(2, 15), rng.randint(2, 30), rng.randint(1, 50)
        paid = n * price + extra
        val = paid - n * price
        text = (
            f"{p} buys {n} {en} at {price} dollars each and pays with {paid} dollars. How much change does {p} get?"
            if lang == "en"
            else f"{p}买了{n}{zh}，每个{price}元，付了{paid}元。应该找回多少元？"
        )
        work = f"{n}*{price} = {n * price}; {paid} - {n * price} = {val}"
    elif t == 1:
        a, b, c = rng.randint(10, 99), rng.randint(2, 9), rng.randint(1, 40)
        val = a * b - c
        text = (
            f"{p} has {b} bags with {a} {en} in each, then gives {c} {en} to {q}. How many {en} does {p} have left?"
            if lang == "en"
            else f"{p}有{b}袋，每袋{a}{zh}，然后送给{q}{c}{zh}。{p}还剩多少{zh}？"
        )
        work = f"{a}*{b} = {a * b}; {a * b} - {c} = {val}"
    elif t == 2:
        v, h, d = rng.randint(20, 90), rng.randint(2, 8), rng.randint(5, 60)
        val = v * h + d
        text = (
            f"{p} drives at {v} km/h for {h} hours and then walks {d} km. How many km does {p} travel in total?"
            if lang == "en"
            else f"{p}以每小时{v}千米的速度开车{h}小时，然后又步行了{d}千米。{p}一共行进了多少千米？"
        )
        work = f"{v}*{h} = {v * h}; {v * h} + {d} = {val}"
    else:
        a, k, c = rng.randint(3, 60), rng.randint(2, 5), rng.randint(1, 30)
        val = a * k + c + a
        text = (
            f"{p} has {a} {en}. {q} has {k} times as many as {p}, plus {c} more. How many {en} do they have together?"
            if lang == "en"
            else f"{p}有{a}{zh}，{q}的数量是{p}的{k}倍再多{c}{zh}。两人一共有多少{zh}？"
        )
        work = f"{q}: {a}*{k} + {c} = {a * k + c}; {a} + {a * k + c} = {val}"
    return f"word{t}", text, str(val), work, {"value": val}


def gen_math(rng: random.Random, lang: str) -> Gen:
    return rng.choice([_arith, _gcdlcm, _linear, _word])(rng, lang)


_SYL = {  # form: (premises, conclusion, valid); A/B/C are roles, x an individual
    "barbara": ("all A B|all B C", "all A C", True),
    "mp": ("all A B|x A", "x B", True),
    "chain": ("all A B|all B C|x A", "x C", True),
    "converse": ("all A B|x B", "x A", False),
    "no": ("no A B|x A", "x B", False),
    "no_neg": ("no A B|x A", "x notB", True),
    "mt": ("all A B|x notB", "x notA", True),
    "mt_bad": ("all A B|x notB", "x A", False),
    "some": ("some A B|all B C", "all A C", False),
    "nochain": ("all A B|no B C|x A", "x C", False),
}


def _clause(s: str, lang: str, roles: dict, x: str) -> str:
    w = s.split()
    if w[0] == "x":
        neg = w[1].startswith("not")
        r = roles[w[1][-1]]
        if lang == "en":
            return f"{x} is {'not ' if neg else ''}{article(r[0])}"
        return f"{x}{'不是' if neg else '是'}{r[2]}"
    a, b = roles[w[1]], roles[w[2]]
    if lang == "en":
        return {"all": "All {} are {}", "no": "No {} are {}", "some": "Some {} are {}"}[
            w[0]
        ].format(a[1], b[1])
    return {"all": "所有{}都是{}", "no": "没有{}是{}", "some": "有些{}是{}"}[w[0]].format(
        a[2], b[2]
    )


def _syllogism(rng: random.Random, lang: str) -> Gen:
    form = rng.choice(list(_SYL))
    prem, concl, valid = _SYL[form]
    roles = dict(zip("ABC", rng.sample(ROLES, 3), strict=True))
    x = names(rng, lang, 1)[0]
    ps = [_clause(s, lang, roles, x) for s in prem.split("|")]
    c = _clause(concl, lang, roles, x)
    if lang == "en":
        lead = rng.choice(
            [
                "Assume the following statements are true.",
                "Consider these premises.",
                "Suppose:",
                "",
            ]
        )
        ask = rng.choice(
            [
                "Does it necessarily follow that {}?",
                "Must it be true that {}?",
                "Can we conclude that {}?",
            ]
        )
        text = f"{lead} {'. '.join(ps)}. " + ask.format(
            c[0].lower() + c[1:] if c.startswith(("All", "No", "Some")) else c
        )
        text += " Answer yes or no."
        ans = "yes" if valid else "no"
        work = (
            "The conclusion follows from the premises."
            if valid
            else "The premises do not force the conclusion."
        )
    else:
        lead = rng.choice(["假设以下陈述都为真。", "已知：", "考虑下列前提。", ""])
        ask = rng.choice(["能否必然推出“{}”？", "“{}”是否一定成立？", "由此能断定“{}”吗？"])
        text = f"{lead}{'；'.join(ps)}。" + ask.format(c) + "请回答是或否。"
        ans = "是" if valid else "否"
        work = "结论可以由前提必然推出。" if valid else "前提不能保证结论成立。"
    return "syllogism", text.strip(), ans, work, {"form": form, "valid": valid}


def _ordering(rng: random.Random, lang: str) -> Gen:
    n = rng.randint(3, 5)
    people = names(rng, lang, n)  # people[0] has the most of the attribute
    rel = rng.choice(ORDER_RELATIONS)
    pairs = [(people[i], people[i + 1]) for i in range(n - 1)]
    rng.shuffle(pairs)
    facts = []
    for a, b in pairs:
        flip = rng.random() < 0.5
        if lang == "en":
            facts.append(f"{b} {rel[1]} {a}" if flip else f"{a} {rel[0]} {b}")
        else:
            facts.append(f"{b}{rel[3].format(a)}" if flip else f"{a}{rel[2].format(b)}")
    k = rng.randrange(-1, n)
    if lang == "en":
        body = ". ".join(facts) + "."
        if k < 0:
            q = f"List everyone from the {rel[4]} to the last, separated by commas."
        else:
            q = f"Who is number {k + 1} when ranked from the {rel[4]} down?"
    else:
        body = "；".join(facts) + "。"
        q = (
            f"请按从{rel[5]}到最后的顺序列出所有人，用顿号分隔。"
            if k < 0
            else f"从{rel[5]}开始排，第{k + 1}位是谁？"
        )
    ans = (", " if lang == "en" else "、").join(people) if k < 0 else people[k]
    work = (" > " if lang == "en" else " ＞ ").join(people)
    return (
        "ordering",
        f"{body} {q}" if lang == "en" else body + q,
        ans,
        work,
        {"order": people, "position": k},
    )


def gen_logic(rng: random.Random, lang: str) -> Gen:
    return (_syllogism if rng.random() < 0.5 else _ordering)(rng, lang)


def _ages(rng: random.Random, lang: str) -> Gen:
    n = rng.randint(3, 4)
    ppl = names(rng, lang, n)
    ages = [rng.randint(20, 70)]
    for _ in range(n - 1):
        ages.append(ages[-1] + rng.choice([-1, 1]) * rng.randint(1, 9))
    facts, steps = [], []
    for i in range(n - 1):
        d = ages[i + 1] - ages[i]
        if lang == "en":
            facts.append(
                f"{ppl[i + 1]} is {abs(d)} years {'older' if d > 0 else 'younger'} than {ppl[i]}"
            )
        else:
            facts.append(f"{ppl[i + 1]}比{ppl[i]}{'大' if d > 0 else '小'}{abs(d)}岁")
        steps.append(f"{ppl[i + 1]} = {ages[i + 1]}")
    if lang == "en":
        text = f"{ppl[0]} is {ages[0]} years old. " + ". ".join(facts) + f". How old is {ppl[-1]}?"
    else:
        text = f"{ppl[0]}今年{ages[0]}岁。" + "；".join(facts) + f"。{ppl[-1]}多少岁？"
    return "ages", text, str(ages[-1]), ", ".join(steps), {"value": ages[-1], "hops": n - 1}


def _transfer(rng: random.Random, lang: str) -> Gen:
    ppl = names(rng, lang, 3)
    en, zh, _ = rng.choice(ITEMS)
    have = {p: rng.randint(5, 40) for p in ppl}
    lines = [f"{p} has {have[p]} {en}" if lang == "en" else f"{p}有{have[p]}{zh}" for p in ppl]
    moves = []
    for _ in range(rng.randint(2, 3)):
        a = rng.choice([p for p in ppl if have[p] > 0])
        b = rng.choice([p for p in ppl if p != a])
        k = rng.randint(1, have[a])
        have[a] -= k
        have[b] += k
        moves.append(f"{a} gives {k} to {b}" if lang == "en" else f"{a}给了{b}{k}{zh}")
    who = rng.choice(ppl)
    if lang == "en":
        text = (
            ". ".join(lines)
            + ". Then "
            + ", then ".join(moves)
            + f". How many {en} does {who} have now?"
        )
    else:
        text = "，".join(lines) + "。然后" + "，接着".join(moves) + f"。现在{who}有多少{zh}？"
    work = ", ".join(f"{p}: {have[p]}" for p in ppl)
    return "transfer", text, str(have[who]), work, {"final": have, "who": who}


def _location(rng: random.Random, lang: str) -> Gen:
    obj = rng.choice(OBJECTS)
    conts = rng.sample(CONTAINERS, rng.randint(1, 2))
    room = rng.choice(ROOMS)
    chain = [obj, *conts]
    owner = names(rng, lang, 1)[0]
    if lang == "en":
        facts = [
            f"{chain[i][0].capitalize()} is in {chain[i + 1][0]}" for i in range(len(chain) - 1)
        ]
        facts.append(f"{chain[-1][0].capitalize()} is in {owner}'s {room[0]}")
        rng.shuffle(facts)
        text = ". ".join(facts) + f". In which room of {owner}'s home is {obj[0]}?"
        ans = room[0]
    else:
        facts = [f"{chain[i][1]}在{chain[i + 1][1]}里" for i in range(len(chain) - 1)]
        facts.append(f"{chain[-1][1]}在{owner}家的{room[1]}里")
        rng.shuffle(facts)
        text = "；".join(facts) + f"。{obj[1]}在{owner}家的哪个房间？"
        ans = room[1]
    work = " -> ".join([c[0] if lang == "en" else c[1] for c in chain] + [ans])
    return "location", text, ans, work, {"chain": [c[0] for c in chain], "room": room[0]}


def gen_multihop(rng: random.Random, lang: str) -> Gen:
    return rng.choice([_ages, _transfer, _location])(rng, lang)
