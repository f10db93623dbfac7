"""`srft ingest` on every real example, the resolved-status files, and bad input."""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from srft_megatron.ingest import read_any, read_resolved
from srft_megatron.trajectory import ROLES, Trajectory
from tests.data.conftest import srft, write_jsonl


def _raw_history(path):
    data = json.loads(path.read_text())
    return data.get("history") or data["trajectory"][-1]["messages"]


def test_every_traj_file_is_ingested_with_all_messages(traj_files, trajectories):
    by_id = {t.id: t for t in trajectories}
    assert len(traj_files) == 6
    for path in traj_files:
        traj = by_id[path.stem]
        raw = _raw_history(path)
        assert len(traj.messages) == len(raw)
        assert traj.num_steps == sum(m["role"] == "assistant" for m in raw) > 0
        for msg, src in zip(traj.messages, raw):
            assert msg["role"] == src["role"] and msg["role"] in ROLES
            if isinstance(src["content"], str):
                assert msg["content"] == src["content"]
            else:  # list of parts: flattened, nothing dropped
                assert msg["content"] == "\n".join(p["text"] for p in src["content"])
            if src.get("tool_calls"):
                assert [c["function"]["name"] for c in msg["tool_calls"]] == \
                    [c["function"]["name"] for c in src["tool_calls"]]
                for call in msg["tool_calls"]:
                    assert isinstance(call["function"]["arguments"], str)
                    json.loads(call["function"]["arguments"])
            if src["role"] == "tool":
                assert msg["tool_call_id"] == src["tool_call_ids"][0]


def test_swe_smith_rows_jsonl_and_parquet(traj_dir, tmp_path):
    rows = [json.loads(line) for line in (traj_dir / "swesmith_rows_sample.jsonl").read_text().splitlines()]
    from_jsonl = [item.result for item in read_any(traj_dir / "swesmith_rows_sample.jsonl")]
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    from_parquet = [item.result for item in read_any(parquet)]
    for got in (from_jsonl, from_parquet):
        assert [t.id for t in got] == [r["traj_id"] for r in rows]
        assert [t.resolved for t in got] == [r["resolved"] for r in rows]
        assert [t.instance_id for t in got] == [r["instance_id"] for r in rows]
        assert [len(t.messages) for t in got] == [len(json.loads(r["messages"])) for r in rows]
    assert [t.messages for t in from_jsonl] == [t.messages for t in from_parquet]
    assert from_parquet[0].source == "swe-smith-row:rows.parquet"


def test_normalised_jsonl_round_trips(trajectories, tmp_path):
    path = write_jsonl(tmp_path / "norm.jsonl", [t.to_json() for t in trajectories])
    again = [item.result for item in read_any(path)]
    assert [t.to_json() for t in again] == [t.to_json() for t in trajectories]


def test_resolved_from_harness_report_jsonl_and_csv(tmp_path, traj_dir):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"resolved_ids": ["swe-agent__test-repo-i1"],
                                  "unresolved_ids": ["marshmallow-code__marshmallow-1867"], "error_ids": []}))
    assert read_resolved(report) == {"swe-agent__test-repo-i1": True, "marshmallow-code__marshmallow-1867": False}
    jsonl = write_jsonl(tmp_path / "r.jsonl", [{"instance_id": "a", "resolved": True}, {"id": "b", "resolved": False}])
    assert read_resolved(jsonl) == {"a": True, "b": False}
    with open(tmp_path / "r.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["id", "resolved"], ["a", "true"], ["b", "0"]])
    assert read_resolved(tmp_path / "r.csv") == {"a": True, "b": False}
    out = tmp_path / "t.jsonl"
    srft("ingest", traj_dir / "swe-agent__test-repo-i1.traj",
             traj_dir / "marshmallow-1867__function_calling_replace.traj", "-o", out, "--resolved", report, "--quiet")
    got = {r["id"]: r["resolved"] for r in map(json.loads, out.read_text().splitlines())}
    # matched by trajectory id, and by instance id (from the .traj replay config)
    assert got == {"swe-agent__test-repo-i1": True, "marshmallow-1867__function_calling_replace": False}


BAD_ROWS = [
    ('{"id": "ok", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}', None),
    ('{"id": "broken", "messages": [', "malformed JSON"),
    ('{"id": "robot", "messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "?"}]}', "unknown role"),
    ('{"id": "empty", "messages": []}', "empty trajectory"),
    ('{"id": "silent", "messages": [{"role": "user", "content": "hi"}]}', "no assistant step"),
    ('{"id": "badcall", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"}, '
     '{"role": "assistant", "content": "b", "tool_calls": [{"function": {"name": "x", "arguments": "{oops"}}]}]}',
     "not valid JSON"),
    ('{"id": "ok", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "again"}]}',
     "duplicate trajectory id"),
]


def test_bad_input_is_rejected_with_file_line_id_and_step(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(row for row, _ in BAD_ROWS) + "\n")
    out = tmp_path / "t.jsonl"
    proc = srft("ingest", src, "-o", out, "--quiet")
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in kept] == ["ok"] and kept[0]["messages"][1]["content"] == "yo"
    rejects = [json.loads(line) for line in (tmp_path / "t.jsonl.rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == len(BAD_ROWS) - 1
    for line, ((_, reason), rej) in enumerate(zip(BAD_ROWS[1:], rejects), start=2):
        assert reason in rej["reason"], rej
        assert rej["file"] == str(src) and rej["line"] == line
    by_reason = {r["reason"]: r for r in rejects}
    robot = next(r for r in rejects if "unknown role" in r["reason"])
    assert robot["id"] == "robot" and f"{src}:3" in robot["error"]
    badcall = next(r for r in rejects if "not valid JSON" in r["reason"] and r["id"] == "badcall")
    assert badcall["step"] == 2 and "step 2" in badcall["error"]
    assert len(by_reason) >= 5
    assert "rejected 6" in proc.stdout
    assert "rejected:" in proc.stderr and "bad.jsonl:3" in proc.stderr


def test_strict_stops_and_writes_nothing(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text("\n".join(row for row, _ in BAD_ROWS) + "\n")
    out = tmp_path / "t.jsonl"
    out.write_text("previous content\n")
    proc = srft("ingest", src, "-o", out, "--strict", "--quiet", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"srft ingest: error: {src}:2")
    assert out.read_text() == "previous content\n"  # nothing half-written, nothing lost
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_non_text_content_part_is_an_error_not_a_silent_drop():
    from srft_megatron.errors import InputError
    from srft_megatron.ingest import normalise_messages

    with pytest.raises(InputError, match="image_url"):
        normalise_messages([{"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                            {"role": "assistant", "content": "x"}], "t1")
    traj = Trajectory.from_json({"id": "t", "messages": normalise_messages(
        [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
         {"role": "assistant", "content": "x"}], "t")})
    assert traj.messages[0]["content"] == "a\nb"
