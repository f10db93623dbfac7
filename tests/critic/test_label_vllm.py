"""`srft label` against two real vLLM CPU servers (tiny random Qwen2): routing, replica loss,
labeller kill + resume. The random model's labels mean nothing; these tests assert the machinery.

The replicas are module-scoped (~30 s to start, ~2.5 GiB each); the test that kills a replica
runs last in this module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from srft_megatron.cli import main as srft
from srft_megatron.trajectory import LabelRecord, read_trajectories

pytestmark = [pytest.mark.vllm, pytest.mark.slow]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def records(path):
    return [json.loads(line) for line in open(path) if line.strip()]


def label_args(corpus, out, tiny_model, servers, *extra):
    args = ["label", "--trajectories", str(corpus), "-o", str(out), "--model", "tiny", "--tokenizer", str(tiny_model),
            "--ideal-path-chars", "32", "--health-interval", "1"]
    for server in servers:
        args += ["--endpoint", server.url]
    return args + list(extra)


def start_labeller(args, log):
    return subprocess.Popen([sys.executable, "-m", "srft_megatron.cli", *args], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_lines(path, n, proc, timeout=180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and sum(1 for line in open(path) if line.endswith("\n")) >= n:
            return
        assert proc.poll() is None, "labeller exited before the kill"
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {n} records after {timeout} s")


def check_complete(out, corpus):
    """Every trajectory exactly once, each record valid for its trajectory (DESIGN §2)."""
    trajs = {t.id: t for _, t in read_trajectories(str(corpus))}
    got = records(out)
    counts = Counter(r["id"] for r in got)
    assert not [i for i, c in counts.items() if c > 1], "duplicates"
    assert set(counts) == set(trajs), f"missing: {sorted(set(trajs) - set(counts))[:5]}"
    for r in got:
        LabelRecord.from_json(r, num_steps=trajs[r["id"]].num_steps)
    return got


def test_every_record_conforms_and_both_replicas_serve(vllm_replicas, corpus, tiny_model, tmp_path, capsys):
    out = tmp_path / "labels.jsonl"
    assert srft(label_args(corpus, out, tiny_model, vllm_replicas, "--max-in-flight", "4", "--quiet")) == 0
    got = check_complete(out, corpus)
    served = Counter(r["critic"]["endpoint"] for r in got)
    assert set(served) == {s.url for s in vllm_replicas}, served
    for r in got:
        assert r["critic"]["model"] == "tiny" and len(r["critic"]["prompt_sha256"]) == 64
        trunc = r["critic"]["truncation"]
        assert r["usage"]["prompt_tokens"] <= trunc["budget_tokens"] + 16  # the server's own count fits
        assert r["usage"]["completion_tokens"] > 0
    assert any(r["critic"]["truncation"]["cuts"] for r in got)  # long ones were shortened, and it is recorded
    summary = capsys.readouterr().out
    assert f"labelled {len(got)}, failed 0" in summary and "tokens: prompt" in summary
    # the labels file is what critic-eval reads
    assert srft(["critic-eval", "--labels", str(out), "--reference", str(out)]) == 0
    assert "accuracy 1.000" in capsys.readouterr().out


def test_labeller_killed_mid_run_resumes_without_loss_or_duplicates(vllm_replicas, corpus, tiny_model, tmp_path,
                                                                     capsys):
    out = tmp_path / "labels.jsonl"
    args = label_args(corpus, out, tiny_model, vllm_replicas, "--max-in-flight", "2", "--quiet")
    with open(tmp_path / "run1.log", "wb") as log:
        proc = start_labeller(args, log)
        try:
            wait_for_lines(out, 6, proc)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    first = out.read_bytes()
    done_first = {r["id"] for r in records(out)} if first.endswith(b"\n") else None
    n = sum(1 for _ in read_trajectories(str(corpus)))
    assert done_first is not None and 6 <= len(done_first) < n, "the kill must land mid-run"
    assert srft(args) == 0
    assert out.read_bytes().startswith(first)  # earlier records untouched
    got = check_complete(out, corpus)
    assert len(got) == n
    assert f"skipped (already done) {len(done_first)}" in capsys.readouterr().out


def test_replica_killed_mid_run_work_moves_to_the_other(vllm_replicas, corpus, tiny_model, tmp_path):
    """Runs last: it kills replica 1 for good (the fixture's teardown reaps it)."""
    out = tmp_path / "labels.jsonl"
    args = label_args(corpus, out, tiny_model, vllm_replicas, "--max-in-flight", "4", "--quiet")
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = start_labeller(args, log)
        try:
            wait_for_lines(out, 8, proc)
            served_before = Counter(r["critic"]["endpoint"] for r in records(out))
            vllm_replicas[1].kill()
            rc = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    log = log_path.read_text()
    assert rc == 0, log
    got = check_complete(out, corpus)
    served_after = Counter(r["critic"]["endpoint"] for r in got)
    dead = vllm_replicas[1].url
    assert served_before[dead] > 0, "replica 1 served before it was killed"
    assert served_after[vllm_replicas[0].url] > served_before[vllm_replicas[0].url]
    # the summary names the dead replica as ejected; its requests were re-sent (no failure)
    line = next(x for x in log.splitlines() if x.strip().startswith(dead))
    assert "ejected 1x" in line, log
    assert "failed 0" in log
