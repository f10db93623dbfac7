"""Every format users bring, rollout ids, demonstration turns and odd input, through `srft ingest`.

The rows here are written by hand in the shape of each public data set (SWE-smith, SWE-Gym /
OpenHands, nebius SWE-agent-trajectories, mini-swe-agent output); no data set is copied."""

from __future__ import annotations

import json

import pytest

from srft_megatron.ingest import read_any
from srft_megatron.trajectory import read_trajectories
from tests.data.conftest import srft, write_jsonl

TOOLS = [{"type": "function", "function": {"name": "execute_bash", "description": "Run a bash command.",
                                           "parameters": {"type": "object", "properties": {
                                               "command": {"type": "string"}}, "required": ["command"]}}},
         {"type": "function", "function": {"name": "finish", "description": "Finish.",
                                           "parameters": {"type": "object", "properties": {}}}}]


def _ingest(tmp_path, *inputs, extra=()):
    out = tmp_path / "t.jsonl"
    proc = srft("ingest", *inputs, "-o", out, "--quiet", *extra)
    kept = [t for _, t in read_trajectories(str(out))]
    rej = tmp_path / "t.jsonl.rejects.jsonl"
    rejects = [json.loads(line) for line in rej.read_text().splitlines()] if rej.exists() else []
    return kept, rejects, proc


def _openhands_row(instance, answer, resolved):
    return {"instance_id": instance, "resolved": resolved, "tools": json.dumps(TOOLS), "messages": [
        {"role": "system", "content": [{"type": "text", "text": "You are OpenHands.", "cache_control": {}}]},
        {"role": "user", "content": [{"type": "text", "text": "Fix the bug."}]},
        {"role": "assistant", "content": "Two commands at once.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "execute_bash", "arguments": '{"command": "ls"}'}},
            {"id": "c2", "type": "function", "function": {"name": "execute_bash", "arguments": '{"command": "pwd"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "execute_bash", "content": [{"type": "text", "text": "a.py"}]},
        {"role": "tool", "tool_call_id": "c2", "name": "execute_bash", "content": "/repo"},
        {"role": "assistant", "content": answer, "tool_calls": [
            {"id": "c3", "type": "function", "function": {"name": "finish", "arguments": "{}"}}]}]}


def test_swe_gym_openhands_rows_keep_tools_and_parallel_calls(tmp_path):
    rows = [_openhands_row("repo__x-1", "done", True), _openhands_row("repo__x-1", "done, differently", False),
            _openhands_row("repo__x-1", "done", True)]  # the third repeats the first rollout
    kept, rejects, _ = _ingest(tmp_path, write_jsonl(tmp_path / "gym.jsonl", rows))
    assert [t.instance_id for t in kept] == ["repo__x-1", "repo__x-1"]
    assert kept[0].id != kept[1].id and all(t.id.startswith("repo__x-1#") for t in kept)
    assert [t.resolved for t in kept] == [True, False]
    assert kept[0].tools == TOOLS  # the tools column (a JSON string) travels with the trajectory
    assert kept[0].num_steps == 2
    assert [c["function"]["arguments"] for c in kept[0].messages[2]["tool_calls"]] == \
        ['{"command": "ls"}', '{"command": "pwd"}']
    assert [m.get("tool_call_id") for m in kept[0].messages[3:5]] == ["c1", "c2"]
    assert kept[0].messages[0]["content"] == "You are OpenHands."
    assert len(rejects) == 1 and "duplicate trajectory id" in rejects[0]["reason"]
    assert rejects[0]["line"] == 3 and f"{tmp_path / 'gym.jsonl'}:1" in rejects[0]["reason"]
    again, _, _ = _ingest(tmp_path, write_jsonl(tmp_path / "gym2.jsonl", rows[:2]))
    assert [t.id for t in again] == [t.id for t in kept]  # content ids are stable across runs


def test_swe_smith_rows_with_messages_as_a_list_and_only_traj_id(tmp_path, traj_dir):
    rows = [json.loads(line) for line in (traj_dir / "swesmith_rows_sample.jsonl").read_text().splitlines()]
    as_lists = [{"traj_id": r["traj_id"], "messages": json.loads(r["messages"])} for r in rows]
    kept, rejects, _ = _ingest(tmp_path, write_jsonl(tmp_path / "smith.jsonl", as_lists))
    assert rejects == [] and [t.id for t in kept] == [r["traj_id"] for r in rows]
    reference = [item.result for item in read_any(traj_dir / "swesmith_rows_sample.jsonl")]
    assert [t.messages for t in kept] == [t.messages for t in reference]
    assert all(t.instance_id is None and t.resolved is None for t in kept)


def test_nebius_rows_roles_system_user_ai_and_text(tmp_path):
    row = {"instance_id": "astropy__astropy-1", "model_name": "swe-agent-llama-70b", "target": True,
           "exit_status": "submitted", "generated_patch": "diff --git ...", "eval_logs": "...",
           "trajectory": [
               {"role": "system", "text": "SETTING: you are an autonomous programmer", "cutoff_date": "x"},
               {"role": "user", "text": "ISSUE: crash", "mask": True},
               {"role": "ai", "text": "Let me look.\n```\nls\n```", "mask": False},
               {"role": "user", "text": "setup.py\n(Open file: n/a)"},
               {"role": "ai", "text": "Done.\n```\nsubmit\n```"}]}
    other = {**row, "target": False, "trajectory": row["trajectory"][:3]}
    kept, rejects, _ = _ingest(tmp_path, write_jsonl(tmp_path / "nebius.jsonl", [row, other]))
    assert rejects == [] and len(kept) == 2 and kept[0].id != kept[1].id
    first = kept[0]
    assert [m["role"] for m in first.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert first.messages[2]["content"] == "Let me look.\n```\nls\n```" and first.num_steps == 2
    assert first.resolved is True and kept[1].resolved is False
    assert first.instance_id == "astropy__astropy-1" and first.extra["model_name"] == "swe-agent-llama-70b"


def _mini_traj(answer):
    return {"info": {"exit_status": "Submitted", "submission": "diff", "model_stats": {"api_calls": 2},
                     "mini_version": "1.9.0", "config": {"agent": {}}},
            "messages": [
                {"role": "system", "content": "You are a helpful assistant that can interact with a computer."},
                {"role": "user", "content": "<pr_description>fix</pr_description>"},
                {"role": "assistant", "content": "THOUGHT: look\n\n```bash\nls\n```", "extra": {"response": {}}},
                {"role": "user", "content": "<returncode>0</returncode>\n<output>a.py</output>"},
                {"role": "assistant", "content": answer},
                {"role": "exit", "content": "diff", "extra": {"exit_status": "Submitted", "submission": "diff"}}],
            "trajectory_format": "mini-swe-agent-1.1"}


def test_mini_swe_agent_rollouts_get_one_id_each(tmp_path):
    instance = "django__django-11099"
    paths = []
    for rollout, answer in (("rollout-01", "done"), ("rollout-02", "done differently")):
        # the layout `srft evaluate` writes: RUN/rollout-NN/agent/INSTANCE/INSTANCE.traj.json
        path = tmp_path / "eval" / rollout / "agent" / instance / f"{instance}.traj.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_mini_traj(answer), indent=2))
        paths.append(path)
    rows = write_jsonl(tmp_path / "mini.jsonl", [{**_mini_traj("done"), "instance_id": instance},
                                                  _mini_traj("no instance")])
    kept, rejects, _ = _ingest(tmp_path, *paths, rows)
    assert len(rejects) == 1 and "needs its 'instance_id'" in rejects[0]["reason"] and rejects[0]["line"] == 2
    assert kept[2].id.startswith(f"{instance}#") and kept[2].messages == kept[0].messages
    kept = kept[:2]
    assert [t.id for t in kept] == [f"eval/rollout-01/{instance}", f"eval/rollout-02/{instance}"]
    assert {t.instance_id for t in kept} == {instance}
    assert kept[0].num_steps == 2 and kept[0].extra == {"exit_status": "Submitted"}
    assert "extra" not in kept[0].messages[2] and kept[1].messages[-1]["content"] == "done differently"


def test_swe_agent_runs_of_one_instance_are_distinct_rollouts(tmp_path, traj_dir):
    src = traj_dir / "marshmallow-1867__function_calling_replace.traj"
    paths = []
    for run in ("run-a", "run-b"):
        path = tmp_path / run / "marshmallow-1867" / "marshmallow-1867.traj"  # RUN/INSTANCE/INSTANCE.traj
        path.parent.mkdir(parents=True)
        path.symlink_to(src)  # read in place, as the tests read all shared data
        paths.append(path)
    kept, rejects, proc = _ingest(tmp_path, *paths, paths[0])
    assert [t.id for t in kept] == ["run-a/marshmallow-1867", "run-b/marshmallow-1867"]
    assert {t.instance_id for t in kept} == {"marshmallow-code__marshmallow-1867"}
    assert len(rejects) == 1 and "duplicate trajectory id" in rejects[0]["reason"]
    assert rejects[0]["id"] == "run-a/marshmallow-1867" and "rejected 1" in proc.stdout


def test_demonstration_turns_are_context_not_steps(tmp_path, traj_dir):
    """SWE-agent with `put_demos_in_history: true` puts the demonstration's turns (minus its system
    message) into the history, each marked `is_demo`; here the marshmallow function-calling
    demonstration precedes a real run."""
    demo = json.loads((traj_dir / "marshmallow-1867__function_calling_replace.traj").read_text())["history"]
    run = json.loads((traj_dir / "function_calling_simple.traj").read_text())["history"]
    history = [run[0]] + [{**m, "is_demo": True} for m in demo if m["role"] != "system"] + run[1:]
    path = tmp_path / "with-demo.traj"
    path.write_text(json.dumps({"history": history, "info": {"exit_status": "submitted"}}))
    kept, rejects, proc = _ingest(tmp_path, path)
    traj = kept[0]
    real_steps = sum(m["role"] == "assistant" for m in run)
    demo_steps = sum(m["role"] == "assistant" for m in demo)
    assert rejects == [] and demo_steps > 0
    assert traj.num_steps == real_steps  # not real_steps + demo_steps
    assert [s.message["content"] for s in traj.steps()] == \
        [m["content"] for m in run if m["role"] == "assistant"]
    assert sum(bool(m.get("is_demo")) for m in traj.messages) == len(demo) - 1
    assert f"{len(demo) - 1} demonstration turns kept as context" in proc.stdout
    # SWE-agent without put_demos_in_history: the demonstration is one user turn marked is_demo
    i1 = [item.result for item in read_any(traj_dir / "swe-agent__test-repo-i1.traj")][0]
    assert [i for i, m in enumerate(i1.messages) if m.get("is_demo")] == [1] and i1.messages[1]["role"] == "user"
    # a label file must have one entry per real step: a demo step labelled is a count error
    labels = tmp_path / "labels.jsonl"
    write_jsonl(labels, [{"id": traj.id, "steps": [{"step": k, "label": "good"}
                                                   for k in range(1, real_steps + demo_steps + 1)]}])
    bad = srft("preprocess", "--trajectories", tmp_path / "t.jsonl", "--labels", labels, "--policy", "srft",
               "--seq-length", 65536, "--output-prefix", tmp_path / "ds", "--quiet", "--strict", check=False)
    assert bad.returncode != 0 and f"{real_steps + demo_steps} labels for {real_steps} steps" in bad.stderr


def test_unknown_shape_is_unsupported_format_naming_its_keys(tmp_path):
    rows = [{"prompt": "x", "completion": "y"}, [1, 2], {"id": "t", "messages": "not a list"}]
    kept, rejects, _ = _ingest(tmp_path, write_jsonl(tmp_path / "odd.jsonl", rows))
    assert kept == [] and len(rejects) == 3
    assert "unsupported format" in rejects[0]["reason"] and "[completion, prompt]" in rejects[0]["reason"]
    assert "not a JSON object (got list)" in rejects[1]["reason"] and rejects[1]["line"] == 2
    assert "unsupported format" in rejects[2]["reason"] and "[id, messages]" in rejects[2]["reason"]


ODD_TRAJ = [
    ({"trajectory": {"a": 1}}, "'trajectory' must be a list of steps, got dict"),
    ({"trajectory": [1, 2, 3]}, "last 'trajectory' entry must be an object, got int"),
    ({"history": [{"role": "user", "content": "hi"}, 7]}, "message 1 is not an object (got int)"),
    ({"history": {"role": "user"}}, "'history' must be a list of messages, got dict"),
    ([1, 2], "must hold a JSON object, got list"),
    ({"info": {}, "steps": []}, "unsupported format: a .traj with keys [info, steps]"),
    ({"history": [{"role": "assistant", "content": 5}]}, "content of type int"),
]


def test_bad_bytes_and_odd_shapes_are_rejected_not_tracebacks(tmp_path):
    good = '{"id": "ok", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}'
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(good.encode() + b"\n" + good.replace("ok", "bin").encode()[:-30] + b"\xff\xfe tail\n"
                     + good.replace("ok", "ok2").encode() + b"\n")
    trajs = []
    for i, (data, _) in enumerate(ODD_TRAJ):
        path = tmp_path / f"odd{i}.traj"
        path.write_text(json.dumps(data))
        trajs.append(path)
    binary = tmp_path / "binary.traj"
    binary.write_bytes(b'{"history": [\n{"role": "user", "content": "\xc3\x28"}]}')
    kept, rejects, proc = _ingest(tmp_path, rows, *trajs, binary)
    assert [t.id for t in kept] == ["ok", "ok2"]
    assert rejects[0]["file"] == str(rows) and rejects[0]["line"] == 2 and "invalid UTF-8" in rejects[0]["reason"]
    for (_, reason), rej, path in zip(ODD_TRAJ, rejects[1:], trajs):
        assert reason in rej["reason"] and rej["file"] == str(path) and rej["id"] == path.stem
    assert "invalid UTF-8" in rejects[-1]["reason"] and rejects[-1]["line"] == 2 and rejects[-1]["id"] == "binary"
    assert "Traceback" not in proc.stderr
    strict = srft("ingest", rows, "-o", tmp_path / "s.jsonl", "--strict", "--quiet", check=False)
    assert strict.returncode == 2 and f"{rows}:2" in strict.stderr and "invalid UTF-8" in strict.stderr


def test_bad_resolved_lines_are_rejected_with_file_and_line(tmp_path):
    src = write_jsonl(tmp_path / "n.jsonl", [
        {"id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]},
        {"id": "b", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "y"}]}])
    resolved = tmp_path / "resolved.jsonl"
    resolved.write_bytes(b'{"id": "a", "resolved": true}\n[1, 2]\n{"id": "b", "resolved": "yes"}\n\xff\n')
    kept, rejects, _ = _ingest(tmp_path, src, extra=("--resolved", resolved))
    assert [(t.id, t.resolved) for t in kept] == [("a", True), ("b", None)]
    assert [(r["file"], r["line"]) for r in rejects] == [(str(resolved), 2), (str(resolved), 3), (str(resolved), 4)]
    assert "not a JSON object" in rejects[0]["reason"] and rejects[1]["id"] == "b"
    assert "invalid UTF-8" in rejects[2]["reason"]
    strict = srft("ingest", src, "-o", tmp_path / "s.jsonl", "--resolved", resolved, "--strict", check=False)
    assert strict.returncode == 2 and f"{resolved}:2" in strict.stderr


@pytest.mark.parametrize("text", ['{"a": {"resolved": "maybe"}}', '{"resolved_ids": "x"}', '[1]'])
def test_unreadable_resolved_file_stops_with_its_name(tmp_path, text):
    src = write_jsonl(tmp_path / "n.jsonl", [
        {"id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"}]}])
    report = tmp_path / "report.json"
    report.write_text(text)
    proc = srft("ingest", src, "-o", tmp_path / "t.jsonl", "--resolved", report, check=False)
    assert proc.returncode == 2 and str(report) in proc.stderr and "Traceback" not in proc.stderr
