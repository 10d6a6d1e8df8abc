import json
from collections import Counter

import pytest

from minillm.data.tasks import CATEGORIES, TaskSource, extract_answer, oracle_reply, verify
from minillm.data.tasks_bank import BANK

N = 20_000


@pytest.fixture(scope="module")
def drawn():
    return {c: [TaskSource(7, {c: 1.0}).draw(i) for i in range(N)] for c in CATEGORIES}


@pytest.mark.parametrize("cat", CATEGORIES)
def test_unique_prompts(drawn, cat):
    tasks = drawn[cat]
    assert len({t.id for t in tasks}) / N >= 0.95
    assert {t.lang for t in tasks} == {"en", "zh"}
    assert all(t.category == cat for t in tasks)


@pytest.mark.parametrize("cat", CATEGORIES)
def test_oracle_passes(drawn, cat):
    for t in drawn[cat][:2000]:
        reply = oracle_reply(t)
        assert verify(t, reply), (t.prompt, t.answer, reply)
        assert verify(t, f"<think>hmm, maybe 0</think>\n{reply}")
        json.dumps(t.to_dict(), ensure_ascii=False)


def _wrong(t):
    line = "Answer: " if t.lang == "en" else "答案："
    if t.category == "json":
        obj = dict(t.meta["object"])
        k = next(k for k, v in obj.items() if not isinstance(v, str))
        obj[k] += 1
        return line + json.dumps(obj, ensure_ascii=False)
    if t.category == "sort":
        out = t.meta["output"]
        if len(set(out)) < 2:
            return None
        return line + ", ".join(map(str, out[::-1]))
    if t.category == "copy":
        return line + t.answer[:-1]
    if t.answer.lstrip("-").isdigit():
        return line + str(int(t.answer) + 1)
    flip = {"yes": "no", "no": "yes", "是": "否", "否": "是"}
    if t.answer in flip:
        return line + flip[t.answer]
    if t.subtype == "ordering" and t.meta["position"] < 0:
        order = t.meta["order"]
        sep = ", " if t.lang == "en" else "、"
        return line + sep.join([order[1], order[0], *order[2:]])
    return line + "Nonexistentville"


@pytest.mark.parametrize("cat", CATEGORIES)
def test_adversarial_replies_fail(drawn, cat):
    checked = 0
    for t in drawn[cat][:1000]:
        good = oracle_reply(t)
        wrong = _wrong(t)
        if wrong is not None:
            assert not verify(t, wrong), (t.prompt, wrong)
            checked += 1
        assert not verify(t, f"<think>{good}</think>")
        assert not verify(t, f"<think>{good}</think>\nI am not sure.")
        assert not verify(t, "")
        if cat in ("math", "logic", "multihop", "knowledge"):
            assert not verify(t, f"I think it is {t.answer}.")
    assert checked > 900


def test_answer_formats():
    src = TaskSource(1, {"math": 1.0}, lang="en")
    t = next(t for t in (src.draw(i) for i in range(100)) if t.subtype == "linear")
    assert verify(t, f"so x = {t.answer}\n#### {t.answer}")
    assert verify(t, f"The solution is \\boxed{{{t.answer}}}.")
    assert verify(t, f"**Answer:** {t.answer}")
    assert not verify(t, f"Answer: {t.answer}\nAnswer: {int(t.answer) + 1}")
    assert extract_answer("no answer here") is None


def test_determinism():
    a, b, c = TaskSource(3), TaskSource(3), TaskSource(4)
    assert [a.draw(i) for i in range(50)] == [b.draw(i) for i in range(50)]
    assert a.draw(123) == TaskSource(3).draw(123)
    assert sum(a.draw(i).id != c.draw(i).id for i in range(50)) >= 45


def test_lang_filter():
    assert {TaskSource(0, lang="zh").draw(i).lang for i in range(200)} == {"zh"}
    assert {TaskSource(0, lang="en").draw(i).lang for i in range(200)} == {"en"}
    langs = Counter(TaskSource(0).draw(i).lang for i in range(2000))
    assert min(langs.values()) > 800


def test_knowledge_bank():
    assert len(BANK) >= 300
    assert len({(f["kind"], f["en"]) for f in BANK}) == len(BANK)
    assert len({(f["kind"], f["zh"]) for f in BANK}) == len(BANK)


def test_weights_proportional():
    w = {"math": 4, "logic": 2, "multihop": 1, "knowledge": 1, "sort": 1, "json": 0.5, "copy": 0.5}
    src = TaskSource(0, w)
    assert set(src.categories()) == set(w)
    counts = Counter(src.draw(i).category for i in range(N))
    total = sum(w.values())
    for c, x in w.items():
        assert abs(counts[c] / N - x / total) < 0.03


def test_bad_args():
    with pytest.raises(ValueError):
        TaskSource(0, {"poetry": 1})
    with pytest.raises(ValueError):
        TaskSource(0, lang="fr")


def test_task_records_for_rl_are_numeric_and_split_disjoint():
    from minillm.data.gsm8k import extract_answer as final_number
    from minillm.data.gsm8k import record_messages, same_number
    from minillm.data.tasks import task_records

    train = task_records("tasks:math:word", 400, "train")
    test = task_records("tasks:math:word", 100, "test")
    assert len(train) == 400 and len(test) == 100
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert all(same_number(final_number(r["answer"]), r["target"]) for r in train + test)
    msgs = record_messages(train[0])
    assert msgs[0] == {"role": "system", "content": train[0]["system"]}
    assert msgs[1]["content"] == train[0]["question"]
    with pytest.raises(ValueError, match="tasks:CATEGORY"):
        task_records("tasks:nope", 5)
    with pytest.raises(ValueError, match="no numeric-answer tasks"):
        task_records("tasks:copy", 5)  # copy answers are strings
