"""Seeded synthetic bench suites in Chinese and English.

Each item is a dict: suite, category, lang, prompt, system, answer_type (choice | int_list |
json | string), answer, options (choice only) and max_new_tokens (sized per answer type).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

from minillm.eval.bench.knowledge import facts

SUITES = ("math_mcq", "qa", "logic", "knowledge", "sort", "json", "copy")
LETTERS = "ABCD"
SYSTEM = {
    "choice": {
        "zh": "你是选择题答题助手。只输出正确选项的字母。",
        "en": "You answer multiple-choice questions. Reply with the letter of the correct option only.",
    },
    "int_list": {"zh": "你是严谨的计算器。只输出结果。", "en": "You are a precise calculator. Output only the result."},
    "json": {"zh": "你是JSON生成器。只输出一个JSON对象。", "en": "You are a JSON generator. Output a single JSON object only."},
    "string": {"zh": "你是复制器。原样输出给定文本。", "en": "You are a copier. Output the given text exactly."},
}  # fmt: skip
CHOICE_HINT = {
    "zh": "只输出选项字母（A、B、C 或 D）。",
    "en": "Answer with the letter (A, B, C or D) only.",
}

NAMES = [("张伟", "Alice"), ("王芳", "Bob"), ("李娜", "Carol"), ("刘洋", "David"), ("陈静", "Emma"),
         ("杨勇", "Frank"), ("赵磊", "Grace"), ("黄敏", "Henry"), ("周杰", "Irene"), ("吴婷", "Jack"),
         ("徐强", "Kate"), ("孙丽", "Leo"), ("马超", "Mia"), ("朱红", "Nick"), ("胡斌", "Olivia"),
         ("郭峰", "Paul"), ("何琳", "Quinn"), ("高翔", "Rose"), ("林涛", "Sam"), ("罗佳", "Tina"),
         ("梁鹏", "Victor")]  # fmt: skip
CITIES = [("北京", "Beijing"), ("上海", "Shanghai"), ("广州", "Guangzhou"), ("深圳", "Shenzhen"),
          ("成都", "Chengdu"), ("杭州", "Hangzhou"), ("武汉", "Wuhan"), ("西安", "Xi'an"),
          ("南京", "Nanjing"), ("重庆", "Chongqing"), ("天津", "Tianjin"), ("苏州", "Suzhou")]  # fmt: skip
HOBBIES = [("游泳", "swimming"), ("跑步", "running"), ("绘画", "painting"), ("下棋", "chess"),
           ("摄影", "photography"), ("唱歌", "singing"), ("钓鱼", "fishing"), ("阅读", "reading"),
           ("篮球", "basketball"), ("书法", "calligraphy"), ("烹饪", "cooking"), ("登山", "hiking")]  # fmt: skip
PETS = [("猫", "cat"), ("狗", "dog"), ("兔子", "rabbit"), ("鹦鹉", "parrot"), ("金鱼", "goldfish"),
        ("乌龟", "turtle"), ("仓鼠", "hamster"), ("刺猬", "hedgehog")]  # fmt: skip
BOOL_EXPRS = [
    ("p and q", lambda p, q, r: p and q),
    ("p or q", lambda p, q, r: p or q),
    ("not p", lambda p, q, r: not p),
    ("p and not q", lambda p, q, r: p and not q),
    ("(p or q) and r", lambda p, q, r: (p or q) and r),
    ("p != q", lambda p, q, r: p != q),
]
BOOL_OPTS = {"zh": ["真", "假", "无法判断", "以上都不对"], "en": ["True", "False", "Cannot tell", "None of the above"]}  # fmt: skip
ORDER_Q = {
    "leftmost": ("谁在最左边？", "Who is leftmost?", 0),
    "rightmost": ("谁在最右边？", "Who is rightmost?", 3),
    "second": ("从左数第二个是谁？", "Who is second from the left?", 1),
    "third": ("从左数第三个是谁？", "Who is third from the left?", 2),
}

Draw = dict[str, tuple]  # lang -> (question, options with the answer first)


def choice_item(suite: str, cat: str, lang: str, question: str, opts: list, pos: int) -> dict:
    """A multiple-choice item with the correct option (`opts[0]`) placed at letter `pos`."""
    others = list(opts[1:])
    options = others[:pos] + [opts[0]] + others[pos:]
    body = "\n".join(f"{L}. {o}" for L, o in zip(LETTERS, options, strict=True))
    return dict(
        suite=suite, category=cat, lang=lang, answer_type="choice", answer=LETTERS[pos],
        options=[str(o) for o in options], prompt=f"{question}\n{body}\n{CHOICE_HINT[lang]}",
        system=SYSTEM["choice"][lang], max_new_tokens=16,
    )  # fmt: skip


def _distract(rng: random.Random, ans: int, spread: int) -> list[int]:
    out: set[int] = set()
    while len(out) < 3:
        d = ans + rng.randint(-spread, spread)
        if d != ans and d >= 0:
            out.add(d)
    return sorted(out)


def draw_math(rng: random.Random, i: int) -> tuple[str, Draw]:
    cat = ("add", "sub", "mul", "div")[i % 4]
    if cat == "add":
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        ans, sym, spread = a + b, "+", 99
    elif cat == "sub":
        a, b = sorted((rng.randint(0, 999), rng.randint(0, 999)), reverse=True)
        ans, sym, spread = a - b, "-", 99
    elif cat == "mul":
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        ans, sym, spread = a * b, "×", 200
    else:
        b, ans = rng.randint(2, 99), rng.randint(2, 99)
        a, sym, spread = b * ans, "÷", 30
    opts = [ans, *_distract(rng, ans, spread)]
    return cat, {
        "zh": (f"计算：{a} {sym} {b} = ?", opts),
        "en": (f"Compute: {a} {sym} {b} = ?", opts),
    }


def draw_qa(rng: random.Random, i: int) -> tuple[str, Draw]:
    people = rng.sample(NAMES, 4)
    rows = list(
        zip(people, rng.sample(CITIES, 4), rng.sample(HOBBIES, 4), rng.sample(PETS, 4), strict=True)
    )
    cat = rng.choice(["who_city", "who_hobby", "who_pet", "city_of", "hobby_of", "pet_of"])
    k = rng.randrange(4)
    col = {"city": 1, "hobby": 2, "pet": 3}[
        cat.split("_")[-1] if cat.startswith("who") else cat[:-3]
    ]
    out = {}
    for li, lang in enumerate(("zh", "en")):
        lines = [
            f"{n[li]}住在{c[li]}，喜欢{h[li]}，养了一只{p[li]}。" if lang == "zh"
            else f"{n[li]} lives in {c[li]}, likes {h[li]} and has a {p[li]}."
            for n, c, h, p in rows
        ]  # fmt: skip
        target = rows[k]
        if cat.startswith("who"):
            v = target[col][li]
            q = {1: (f"谁住在{v}？", f"Who lives in {v}?"), 2: (f"谁喜欢{v}？", f"Who likes {v}?"),
                 3: (f"谁养了{v}？", f"Who has the {v}?")}[col][li]  # fmt: skip
            opts = [target[0][li]] + [r[0][li] for j, r in enumerate(rows) if j != k]
        else:
            n = target[0][li]
            q = {1: (f"{n}住在哪里？", f"Where does {n} live?"), 2: (f"{n}喜欢什么？", f"What does {n} like?"),
                 3: (f"{n}养了什么宠物？", f"What pet does {n} have?")}[col][li]  # fmt: skip
            opts = [target[col][li]] + [r[col][li] for j, r in enumerate(rows) if j != k]
        out[lang] = ("\n".join(lines) + "\n" + q, opts)
    return cat, out


def draw_logic(rng: random.Random, i: int) -> tuple[str, Draw]:
    if i % 2 == 0:
        p, q, r = (rng.random() < 0.5 for _ in range(3))
        expr, fn = rng.choice(BOOL_EXPRS)
        out = {}
        for lang in ("zh", "en"):
            t, f, *rest = BOOL_OPTS[lang]
            v = {True: t, False: f}
            facts_ = ", ".join(f"{k} = {v[x]}" for k, x in zip("pqr", (p, q, r), strict=True))
            opts = [v[bool(fn(p, q, r))], v[not fn(p, q, r)], *rest]
            head = "已知" if lang == "zh" else "Given"
            ask = f"表达式 {expr} 的值是？" if lang == "zh" else f"what is the value of {expr}?"
            out[lang] = (
                f"{head} {facts_}，{ask}" if lang == "zh" else f"{head} {facts_}, {ask}",
                opts,
            )
        return "bool", out
    order = rng.sample(range(len(NAMES)), 4)
    pairs = [(order[j], order[j + 1]) for j in range(3)]
    rng.shuffle(pairs)
    cat = rng.choice(list(ORDER_Q))
    qz, qe, idx = ORDER_Q[cat]
    out = {}
    for li, lang in enumerate(("zh", "en")):
        fmt = "{}紧挨在{}的左边。" if lang == "zh" else "{} is directly left of {}."
        lines = [fmt.format(NAMES[a][li], NAMES[b][li]) for a, b in pairs]
        head = "四个人站成一排。" if lang == "zh" else "Four people stand in a row."
        opts = [NAMES[order[idx]][li]] + [NAMES[o][li] for j, o in enumerate(order) if j != idx]
        out[lang] = ("\n".join([head, *lines, (qz, qe)[li]]), opts)
    return f"order_{cat}", out


def knowledge_order(rng: random.Random, n: int) -> list[int]:
    """Fact indices for `n` items: shuffled passes over the whole bank (no repeats within one)."""
    out: list[int] = []
    while len(out) < n:
        perm = list(range(len(facts())))
        rng.shuffle(perm)
        out += perm
    return out[:n]


def positions(rng: random.Random, n: int) -> list[int]:
    """Correct-answer positions in shuffled blocks of A-D, so letters are balanced exactly."""
    out: list[int] = []
    while len(out) < n:
        block = [0, 1, 2, 3]
        rng.shuffle(block)
        out += block
    return out[:n]


CHOICE_DRAWS: dict[str, Callable] = {"math_mcq": draw_math, "qa": draw_qa, "logic": draw_logic}


def gen_suite(suite: str, n: int, seed: int, langs: list[str], list_len: int = 8, copy_len: int = 24) -> list[dict]:  # fmt: skip
    """`n` items of `suite` per language, from its own RNG (`seed` + the suite's index)."""
    rng = random.Random(seed + SUITES.index(suite))
    items = []
    if suite in CHOICE_DRAWS or suite == "knowledge":
        pos = positions(rng, n)
        kidx = knowledge_order(rng, n) if suite == "knowledge" else None
        for i in range(n):
            if kidx is not None:
                f = facts()[kidx[i]]
                cat, draw = f["category"], {lang: f[lang] for lang in ("zh", "en")}
            else:
                cat, draw = CHOICE_DRAWS[suite](rng, i)
            items += [choice_item(suite, cat, lang, *draw[lang], pos[i]) for lang in langs]
            if kidx is not None:
                for it in items[-len(langs) :]:
                    it["fact"] = kidx[i]
        return items
    for _ in range(n):
        for lang in langs:
            items.append(dict(suite=suite, category=suite, lang=lang, system=""))
        if suite == "sort":
            nums = [rng.randint(-999, 999) for _ in range(list_len)]
            shown = ", ".join(map(str, nums))
            extra = dict(
                answer_type="int_list", answer=sorted(nums), max_new_tokens=6 * list_len + 16
            )
            text = {"zh": f"将下列整数按从小到大排序，用英文逗号分隔，只输出排序结果：\n{shown}",
                    "en": f"Sort these integers in ascending order. Output only the sorted list, comma-separated:\n{shown}"}  # fmt: skip
        elif suite == "json":
            a, b = rng.randint(-999, 999), rng.randint(-999, 999)
            ans = {"sum": a + b, "diff": a - b, "prod": a * b}
            extra = dict(answer_type="json", answer=ans, max_new_tokens=96)
            text = {"zh": f'已知 a = {a}，b = {b}。只输出一个JSON对象：{{"sum": a+b, "diff": a-b, "prod": a*b}}（填入整数值）。',
                    "en": f'Given a = {a} and b = {b}, output only a JSON object {{"sum": a+b, "diff": a-b, "prod": a*b}} with the integer values.'}  # fmt: skip
        else:
            s = "".join(
                rng.choice(string.ascii_letters + string.digits + "_") for _ in range(copy_len)
            )
            extra = dict(answer_type="string", answer=s, max_new_tokens=2 * copy_len + 16)
            text = {"zh": f"原样复制下面的字符串，只输出该字符串：\n{s}",
                    "en": f"Copy the following string exactly. Output only the string:\n{s}"}  # fmt: skip
        for it in items[-len(langs) :]:
            it.update(
                extra, prompt=text[it["lang"]], system=SYSTEM[extra["answer_type"]][it["lang"]]
            )
    return items


def build(
    seed: int = 1337,
    lang: str = "both",
    counts: dict[str, int] | None = None,
    suites: list[str] | None = None,
    list_len: int = 8,
    copy_len: int = 24,
) -> list[dict]:
    """All items of `suites` (default: all), `counts[suite]` per language (default 50),
    shuffled together with `Random(seed)`; each gets an `id`."""
    langs = ["zh", "en"] if lang == "both" else [lang]
    if lang not in ("zh", "en", "both"):
        raise ValueError(f"--lang={lang!r} must be zh, en or both")
    counts = counts or {}
    items = []
    for s in suites or SUITES:
        if s not in SUITES:
            raise ValueError(f"unknown suite {s!r}; choose from {', '.join(SUITES)} or all")
        items += gen_suite(s, counts.get(s, 50), seed, langs, list_len, copy_len)
    random.Random(seed).shuffle(items)
    for i, it in enumerate(items):
        it["id"] = i
    return items
