"""`srft preprocess` at the edges: nothing to write, a directory as prefix, duplicated ids, bad
bytes, and one tool output too large to ever fit (bounded memory and time)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np

from srft_megatron.dataset import dataset_files, open_dataset
from tests.conftest import ROOT
from tests.data.conftest import srft, write_jsonl


def _traj(tid, *steps, observation="ok"):
    messages = [{"role": "user", "content": f"task {tid}"}]
    for text in steps:
        messages += [{"role": "assistant", "content": text}, {"role": "user", "content": observation}]
    return {"id": tid, "messages": messages[:-1]}


def _preprocess(src, prefix, *extra, check=False):
    return srft("preprocess", "--trajectories", src, "--policy", "naive", "--output-prefix", prefix,
                "--quiet", *extra, check=check)


def test_zero_documents_exit_non_zero_with_the_reason_and_no_dataset(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    proc = _preprocess(empty, tmp_path / "a", "--seq-length", 1024)
    assert proc.returncode == 2 and "the input holds no trajectories" in proc.stderr
    long = write_jsonl(tmp_path / "long.jsonl", [_traj("t1", "word " * 300), _traj("t2", "more " * 400)])
    proc = _preprocess(long, tmp_path / "b", "--seq-length", 64)
    assert proc.returncode == 2
    assert "every trajectory (2) is longer than --seq-length before its first step ends" in proc.stderr
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(json.dumps(_traj("t1", "word " * 300)).encode() + b"\n\xff\n")
    proc = _preprocess(mixed, tmp_path / "c", "--seq-length", 64)
    assert proc.returncode == 2 and "1 skipped: first step ends beyond seq-length" in proc.stderr
    assert "1 rejected: invalid UTF-8" in proc.stderr
    for prefix in ("a", "b", "c"):
        assert not any(p.exists() for p in dataset_files(tmp_path / prefix).values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.rejects.jsonl", "empty.jsonl", "long.jsonl", "mixed.jsonl"]


def test_output_prefix_naming_a_directory_is_an_error(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", [_traj("t1", "done")])
    for prefix in (f"{tmp_path}/out/", str(tmp_path)):
        proc = _preprocess(src, prefix, "--seq-length", 1024)
        assert proc.returncode == 2 and "names a directory; give DIR/NAME" in proc.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("*_tokens.bin"))


def test_duplicate_ids_and_bad_bytes_are_rejected_with_file_and_line(tmp_path):
    src = tmp_path / "t.jsonl"
    src.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in (
        _traj("a", "one"), _traj("b", "two"), _traj("a", "one again"))) + b'{"id": "c", "\xc3(": 1}\n')
    proc = _preprocess(src, tmp_path / "ds", "--seq-length", 1024, check=True)
    assert open_dataset(tmp_path / "ds").meta["counts"]["documents"] == 2
    rejects = [json.loads(line) for line in (tmp_path / "ds.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["id"]) for r in rejects] == [(3, "a"), (4, None)]
    assert rejects[0]["reason"] == "duplicate trajectory id (first at line 1)" and rejects[0]["file"] == str(src)
    assert "invalid UTF-8" in rejects[1]["reason"] and f"{src}:4" in proc.stderr
    strict = _preprocess(src, tmp_path / "s", "--seq-length", 1024, "--strict")
    assert strict.returncode == 2 and f"{src}:3, trajectory a: duplicate trajectory id" in strict.stderr


def test_fitting_before_render_changes_no_token(tmp_path, monkeypatch):
    """Dropping the messages that cannot fit before rendering gives the dataset that rendering
    everything and cutting afterwards gives, token for token."""
    from srft_megatron import preprocess
    from srft_megatron.policy import make_policy

    def call(text):
        return {"role": "assistant", "content": "edit", "tool_calls": [{"id": "c", "type": "function", "function": {
            "name": "str_replace_editor", "arguments": json.dumps({"command": "create", "file_text": text})}}]}

    edit = {"id": "t4", "messages": [{"role": "user", "content": "task"}, call('print("hi")\n' * 3),
                                     {"role": "tool", "tool_call_id": "c", "content": "ok"},
                                     call('x = "\\n"\n' * 400), {"role": "tool", "tool_call_id": "c", "content": "ok"}]}
    rows = [_traj("t1", "a " * 50, "b " * 400, "c", observation="x " * 300),
            _traj("t2", "short", observation="y " * 5000), _traj("t3", "z " * 30), edit]
    src = write_jsonl(tmp_path / "t.jsonl", rows)

    def run(prefix, render):
        job = preprocess.PreprocessJob(trajectories=str(src), output_prefix=str(tmp_path / prefix), seq_length=512,
                                       policy=make_policy("naive"), render=render, progress=False)
        return preprocess.run_preprocess(job), open_dataset(tmp_path / prefix)

    for render in ("tools", "xml"):
        monkeypatch.setattr(preprocess, "FIT_CHARS_PER_TOKEN", 4)
        meta_fit, fit = run(f"fit-{render}", render)
        monkeypatch.setattr(preprocess, "FIT_CHARS_PER_TOKEN", 10 ** 9)  # never bound: render everything
        meta_all, whole = run(f"all-{render}", render)
        assert meta_fit["counts"]["documents"] == meta_all["counts"]["documents"] == 4
        assert meta_fit["counts"]["steps_cut"] == meta_all["counts"]["steps_cut"] == 3
        assert meta_fit["timing"]["rendered_tokens"] < meta_all["timing"]["rendered_tokens"]
        for index in range(4):
            for a, b in zip(fit.document(index), whole.document(index)):
                np.testing.assert_array_equal(a, b)


def test_a_50_mb_observation_costs_bounded_memory_and_time(tmp_path):
    """One trajectory whose second observation is 50 MB: the step before it is kept, the rest
    never rendered. Measured in a child process: peak RSS (ru_maxrss) and wall time."""
    blob = "".join(f"line {i}: {'x' * 90}\n" for i in range(50 * 1024 * 1024 // 100))
    row = {"id": "huge", "messages": [
        {"role": "user", "content": "task"}, {"role": "assistant", "content": "look"},
        {"role": "user", "content": blob}, {"role": "assistant", "content": "done"}]}
    src = write_jsonl(tmp_path / "t.jsonl", [row])
    del blob, row
    script = textwrap.dedent(f"""
        import resource, subprocess, sys, time
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "preprocess", "--trajectories",
                               {str(src)!r}, "--policy", "naive", "--seq-length", "2048", "--output-prefix",
                               {str(tmp_path / "ds")!r}, "--quiet"], capture_output=True, text=True)
        print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.time() - start)
        sys.stderr.write(proc.stderr[-2000:])
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    code, rss_kb, seconds = out.stdout.split()
    assert code == "0", out.stderr
    print(f"50 MB observation: peak RSS {int(rss_kb) / 1024:.0f} MB, {float(seconds):.1f} s")
    assert int(rss_kb) < 2 * 1024 * 1024  # < 2 GB
    meta = open_dataset(tmp_path / "ds").meta
    assert meta["counts"]["documents"] == 1 and meta["counts"]["steps_cut"] == 1
    assert meta["timing"]["rendered_tokens"] < 100
