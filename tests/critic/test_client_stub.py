"""The labeller against our own OpenAI-compatible servers: garbage answers, 5xx, a replica that
is down at the start and comes back, and resuming. (Real vLLM: test_label_vllm.py.)"""

from __future__ import annotations

import asyncio
import json
import threading
import time


from srft_megatron.cli import main as srft
from srft_megatron.critic.client import PoolConfig
from srft_megatron.critic.labeller import LabelConfig, Labeller
from srft_megatron.critic.prompt import load_prompt
from srft_megatron.critic.transcript import TokenCounter
from srft_megatron.trajectory import LabelRecord, read_trajectories
from tests.critic.openai_stub import GARBAGE, StubServer


def lines(path):
    return [json.loads(line) for line in open(path) if line.strip()] if path.exists() else []


def label_args(trajectories, out, tiny_model, *endpoints, extra=()):
    args = ["label", "--trajectories", str(trajectories), "-o", str(out), "--model", "tiny",
            "--tokenizer", str(tiny_model), "--quiet", "--retries", "2", "--ideal-path-chars", "32"]
    for ep in endpoints:
        args += ["--endpoint", ep]
    return args + list(extra)


def test_garbage_answers_are_retried_then_recorded_as_failures(trajectories, tiny_model, tmp_path, capsys):
    out = tmp_path / "labels.jsonl"
    with StubServer("garbage") as stub:
        rc = srft(label_args(trajectories, out, tiny_model, stub.url, extra=["--invalid-retries", "2"]))
        n = sum(1 for _ in read_trajectories(str(trajectories)))
        assert rc == 1 and lines(out) == []
        assert stub.requests == 3 * n  # each asked 1 + 2 times
    failures = lines(tmp_path / "labels.jsonl.failures.jsonl")
    assert len(failures) == n and len({f["id"] for f in failures}) == n
    for f in failures:
        assert f["reason"].startswith("invalid answer after 3 attempts: not valid JSON")
        assert len(f["attempts"]) == 3 and all(a["raw"] == GARBAGE for a in f["attempts"])
    assert f"{n} failures recorded" in capsys.readouterr().err


def test_server_errors_are_retried_then_recorded(trajectories, tiny_model, tmp_path):
    out = tmp_path / "labels.jsonl"
    with StubServer("error500") as stub:
        rc = srft(label_args(trajectories, out, tiny_model, stub.url,
                             extra=["--eject-after", "1000", "--all-down-timeout", "5"]))
        n = sum(1 for _ in read_trajectories(str(trajectories)))
        assert rc == 1 and stub.requests == 3 * n  # 1 + --retries 2
    failures = lines(tmp_path / "labels.jsonl.failures.jsonl")
    assert len(failures) == n and all("HTTP 500" in f["reason"] for f in failures)
    # a later run against a healthy server retries exactly the failed ones
    with StubServer("valid") as good:
        assert srft(label_args(trajectories, out, tiny_model, good.url)) == 0
        assert good.requests == n
    assert sorted(r["id"] for r in lines(out)) == sorted(t.id for _, t in read_trajectories(str(trajectories)))
    # the failures file was rewritten at the end of that run: no stale failure of a labelled trajectory
    assert not (tmp_path / "labels.jsonl.failures.jsonl").exists()


def wait_for(condition, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_replica_down_at_start_is_taken_back_when_healthy(corpus, tiny_model, tmp_path):
    """B is down when labelling starts; it comes up while A holds its requests (a gate, not a
    clock: on a slow or fast machine alike, the run cannot end before B is back)."""
    gate = threading.Event()
    a = StubServer("valid", gate=gate).start()
    b = StubServer("valid")  # not started yet
    config = LabelConfig(model="tiny", endpoints=[a.url, b.url], template=load_prompt(None), tokenizer=str(tiny_model),
                         ideal_path_chars=32, pool=PoolConfig(max_in_flight=2, health_interval=0.1, retries=2))
    labeller = Labeller(config, TokenCounter.load(str(tiny_model)))
    seen = {}

    def bring_b_up():
        seen["a_busy"] = wait_for(lambda: a.requests >= 2)  # A's two slots are held at the gate
        b.start()
        seen["b_served"] = wait_for(lambda: b.requests >= 1)  # re-admitted by its health probe
        gate.set()

    helper = threading.Thread(target=bring_b_up, daemon=True)
    helper.start()
    try:
        totals = asyncio.run(labeller.run(str(corpus), str(tmp_path / "l.jsonl"), str(tmp_path / "f.jsonl"),
                                          progress=False))
    finally:
        gate.set()
        helper.join(timeout=60)
        a.stop()
        b.stop()
    assert seen == {"a_busy": True, "b_served": True}
    n = sum(1 for _ in read_trajectories(str(corpus)))
    assert totals.labelled == n and totals.failed == 0
    stats = {s["url"]: s for s in totals.endpoints}
    assert stats[b.url]["readmissions"] == 1 and stats[b.url]["served"] > 0 and b.requests > 0
    assert stats[a.url]["served"] + stats[b.url]["served"] == n
    records = lines(tmp_path / "l.jsonl")
    assert len({r["id"] for r in records}) == len(records) == n
    by_id = {t.id: t for _, t in read_trajectories(str(corpus))}
    for r in records:
        LabelRecord.from_json(r, num_steps=by_id[r["id"]].num_steps)
    assert not (tmp_path / "f.jsonl").exists()  # no failure: no side file


def test_wrong_model_name_is_a_clear_error(trajectories, tiny_model, tmp_path, capsys):
    with StubServer("valid", model="other") as stub:
        rc = srft(label_args(trajectories, tmp_path / "l.jsonl", tiny_model, stub.url))
    assert rc == 2 and "not 'tiny'" in capsys.readouterr().err


def test_bad_input_records_go_to_the_failures_file(trajectories, tiny_model, tmp_path):
    good = [line for line in trajectories.read_text().splitlines() if line.strip()][:2]
    bad = tmp_path / "t.jsonl"
    bad.write_text("\n".join([good[0], "{not json", good[0], '{"id": "x", "messages": []}', good[1]]) + "\n")
    out = tmp_path / "labels.jsonl"
    with StubServer("valid") as stub:
        assert srft(label_args(bad, out, tiny_model, stub.url)) == 1
        assert stub.requests == 2
    assert len(lines(out)) == 2
    reasons = {f["line"]: f["error"] for f in lines(tmp_path / "labels.jsonl.failures.jsonl")}
    assert set(reasons) == {2, 3, 4}
    assert "t.jsonl:2" in reasons[2] and "malformed JSON" in reasons[2]
    assert "duplicate trajectory id" in reasons[3]
    assert "t.jsonl:4, trajectory x" in reasons[4]


def test_own_prompt_file_is_used_and_recorded(trajectories, tiny_model, tmp_path):
    import hashlib

    prompt = tmp_path / "my_prompt.txt"
    prompt.write_text("MY RUBRIC for {{num_steps}} steps.\n{{trajectory}}\nEND")
    out = tmp_path / "labels.jsonl"
    with StubServer("valid") as stub:
        assert srft(label_args(trajectories, out, tiny_model, stub.url, extra=["--prompt", str(prompt)])) == 0
        sent = stub.last_payload
    content = sent["messages"][0]["content"]
    assert content.startswith("MY RUBRIC for ") and content.endswith("\nEND") and "=== Step 1 ===" in content
    assert sent["response_format"]["type"] == "json_schema" and "guided_json" not in sent
    digest = hashlib.sha256(prompt.read_bytes()).hexdigest()
    assert {r["critic"]["prompt_sha256"] for r in lines(out)} == {digest}
