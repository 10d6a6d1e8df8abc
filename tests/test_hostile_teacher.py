"""The teacher client and the one rule for teacher output against a misbehaving Ollama-protocol
server (tests/hostile_teacher.py): every transport fault is retried and counted by reason,
every content fault is stored clean or rejected with its reason, and no think tag survives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.generator import admit
from minillm.data.tasks import TaskSource, oracle_reply, verify
from minillm.teacher import OllamaTeacher, error_kind, split_think
from tests.hostile_teacher import CONTENT, FAULTS, RETRIED, STORED, hostile_teacher

TASKS = [TaskSource(3, None, "en").draw(i) for i in range(40)]
ANSWERS = {t.prompt: oracle_reply(t) for t in TASKS}
LABEL = {"busy503": "http_5xx", "err500": "http_5xx", "timeout": "timeout", "reset": "reset",
         "truncated_json": "bad_json", "stream_error": "stream"}  # fmt: skip


@pytest.fixture(scope="module")
def teacher_srv():
    with hostile_teacher(ANSWERS.get, timeout_s=1.5) as srv:
        yield srv


def ask(srv, task, stream: bool):
    t = OllamaTeacher(srv.url, "hostile", timeout=0.5, retries=3, backoff=0.01, stream=stream)
    with t:
        messages = [{"role": "system", "content": task.system},
                    {"role": "user", "content": task.prompt}]  # fmt: skip
        return t.chat(messages, seed=1)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_retried_stored_clean_or_rejected(teacher_srv, fault, stream):
    task = TASKS[FAULTS.index(fault) + (len(FAULTS) if stream else 0)]  # a fresh prompt each
    teacher_srv.force = fault
    try:
        reply = ask(teacher_srv, task, stream)
    finally:
        teacher_srv.force = None
    text, why = admit(task, reply.content)
    if fault in RETRIED:
        label = "http_5xx" if fault == "stream_error" and not stream else LABEL[fault]
        assert reply.retry_reasons == (label,), reply
        assert (text, why) == (ANSWERS[task.prompt], "ok")
    elif fault in STORED:
        assert reply.retry_reasons == () and (text, why) == (ANSWERS[task.prompt], "ok")
        assert "think" not in text.lower() and verify(task, text)
        assert reply.thinking  # the reasoning is kept, apart from the answer
    else:
        assert text is None and why == {"empty": "empty", "leak_variant": "think_leak"}[fault]
    assert fault in CONTENT or fault in RETRIED


def test_retries_spent_is_one_error_with_its_kind():
    from minillm.teacher import TeacherError

    with hostile_teacher(ANSWERS.get) as srv:
        srv.fault = lambda prompt: "busy503"  # every attempt is answered 503
        with pytest.raises(TeacherError) as e:
            ask(srv, TASKS[-1], False)
    assert e.value.attempts == 4 and e.value.retry_reasons == ("http_5xx",) * 3
    assert error_kind(e.value) == "http_5xx" and "giving up after 4 attempts" in str(e.value)


TAGS = ["<think>", "</think>", "<THINK>", "</Think>", "<think >", "< think>", "</ think>",
        "<thinking>", "</thinking>", "<think/>", "<Think\n>"]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(TASKS),
    st.lists(
        st.one_of(
            st.sampled_from(TAGS),
            st.sampled_from(["", " ", "\n", "x", "42", "思考"]),
            st.text(max_size=6),
        ),
        max_size=8,
    ),  # fmt: skip
    st.integers(0, 8),
    st.text(max_size=12),
)
def test_no_think_tag_survives_and_stored_is_what_was_verified(task, junk, at, thinking):
    """Any reply: the answer with tags and noise inserted anywhere, through the client's
    split and the generator's rule, is either rejected or stored without a think tag and
    exactly as verified."""
    answer = oracle_reply(task)
    at = min(at, len(junk))
    raw = "".join(junk[:at]) + answer + "".join(junk[at:])
    content, _ = split_think(raw, thinking)
    text, why = admit(task, content)
    if text is None:
        assert why in ("think_leak", "empty", "wrong")
        return
    squeezed = "".join(text.lower().split())
    assert "<think" not in squeezed and "</think" not in squeezed
    assert why == "ok" and verify(task, text) and text == text.strip()


def test_distill_run_against_the_hostile_teacher_loses_and_leaks_nothing(tmp_path):
    """`launch/distill.py` with two generators on a real local Ray: every fault injected, every
    correct answer stored once and clean, every retry and reject counted by reason."""
    pytest.importorskip("ray")
    from launch.bench_faults import run_faults

    r = run_faults(tmp_path / "run", samples=96)
    assert r["rc"] == 0, r["log"]
    f = r["by_fault"]
    assert set(f) == set(FAULTS), f  # every kind of fault was injected
    assert r["stored"] == 96 and r["lost"] == 0 and r["duplicated"] == 0 and r["leaked"] == 0, r
    want = {"http_5xx": f["busy503"] + f["err500"] + f["stream_error"], "timeout": f["timeout"],
            "bad_json": f["truncated_json"], "reset": f["reset"]}  # fmt: skip
    assert r["retries"] == want and r["errors"] == {}, r
    assert r["rejected"] == {"empty": f["empty"], "think_leak": f["leak_variant"]}, r
    assert f"retries={sum(want.values())}(" in r["log"]  # the status line shows them


@pytest.mark.usefixtures("cluster")
def test_generator_actor_counts_retries_and_rejects_on_the_dashboard():
    """A TeacherGenerator actor against the hostile teacher: its lease stats and the Ray
    metrics endpoint count each retry and reject by reason, as injected."""
    import time
    from collections import Counter

    import ray

    from actors.generator import TeacherGenerator
    from tests.conftest import scrape

    with hostile_teacher(ANSWERS.get, fault_share=1.0, timeout_s=1.5, seed=11) as srv:
        spec = {"kind": "ollama", "url": srv.url, "model": "hostile", "timeout": 0.5,
                "retries": 3, "backoff": 0.01}  # fmt: skip
        gen = (
            ray.remote(TeacherGenerator)
            .options(num_cpus=0)
            .remote(0, spec, {"seed": 3, "weights": None, "lang": "en"}, 4)
        )
        _, stats = ray.get(gen.generate.options(num_returns=2).remote(0, 0, 32))
        first = Counter(k for _, a, k in srv.log if a == 0)
    label = {**LABEL, "stream_error": "http_5xx"}  # non-streaming: Ollama's 500
    want_retries = Counter()
    for k, n in first.items():
        if k in RETRIED:
            want_retries[label[k]] += n
    want_rejects = {k: v for k, v in (("empty", first["empty"]),
                                      ("think_leak", first["leak_variant"])) if v}  # fmt: skip
    assert len(want_retries) >= 3 and want_rejects, first  # the schedule injects both kinds
    assert stats["retries_by_reason"] == dict(want_retries), (stats, first)
    assert stats["rejected_by_reason"] == want_rejects, (stats, first)

    def series(name: str) -> Counter:
        out: Counter = Counter()
        for line in scrape().splitlines():
            if line.startswith(f"ray_{name}") and "reason=" in line:
                reason = line.split('reason="', 1)[1].split('"', 1)[0]
                out[reason] += float(line.rsplit(" ", 1)[1])
        return out

    end = time.time() + 30
    while (series("minillm_teacher_retries") != want_retries
           or series("minillm_teacher_rejects") != want_rejects) and time.time() < end:  # fmt: skip
        time.sleep(0.5)
    assert series("minillm_teacher_retries") == want_retries
    assert series("minillm_teacher_rejects") == want_rejects
