"""Tools travel with the data: profiles, `srft ingest --tools`, `srft preprocess --tools`, the
tools hash and the newline-start step count in the metadata and `srft report`."""

from __future__ import annotations

import dataclasses
import json

import pytest

from srft_megatron.dataset import open_dataset
from srft_megatron.errors import InputError
from srft_megatron.tools import function_docs, load_profile, load_tools, profile_names, tools_sha256
from srft_megatron.trajectory import read_trajectories
from tests.data.conftest import srft, write_jsonl
from tests.data.test_parity import expected_prompt_ids, newline_trajectory


def test_swe_agent_profile_is_what_swe_agent_sends():
    """Shape of SWE-agent's `Command.get_function_calling_tool()` for its default config: the
    built-in bash tool first, then the bundles' tools in order; no-argument tools get a bare
    object schema."""
    assert "swe-agent" in profile_names()
    tools = load_profile("swe-agent")
    assert [t["function"]["name"] for t in tools] == ["bash", "str_replace_editor", "submit"]
    bash, editor, submit = (t["function"] for t in tools)
    assert bash["parameters"] == {"type": "object", "properties": {"command": {
        "type": "string", "description": "The bash command to execute."}}, "required": ["command"]}
    props = editor["parameters"]["properties"]
    assert list(props) == ["command", "path", "file_text", "old_str", "new_str", "insert_line", "view_range"]
    assert editor["parameters"]["required"] == ["command", "path"]
    assert props["command"]["enum"] == ["view", "create", "str_replace", "insert", "undo_edit"]
    assert props["view_range"] == {"type": "array", "description": props["view_range"]["description"],
                                   "items": {"type": "integer"}}
    assert submit == {"name": "submit", "description": "submits the current file", "parameters": {"type": "object"}}
    assert load_profile("swe-agent") is not tools and load_profile("swe-agent") == tools


def test_tools_file_or_profile_and_clear_errors(tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(load_profile("swe-agent")[:1]))
    assert load_tools(str(path)) == load_profile("swe-agent")[:1]
    assert load_tools("swe-agent") == load_profile("swe-agent")
    with pytest.raises(InputError, match="neither a file nor a tools profile.*swe-agent"):
        load_tools("no-such-profile")
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "bash"}')
    with pytest.raises(InputError, match="must be a list") as info:
        load_tools(str(bad))
    assert info.value.file == str(bad)
    bad.write_text('[{"type": "function", "function": {}}]')
    with pytest.raises(InputError, match="tool 0 is not an OpenAI function tool"):
        load_tools(str(bad))
    # the hash follows what the template prints: key order matters, whitespace does not
    tools = load_profile("swe-agent")
    assert tools_sha256(json.loads(json.dumps(tools, indent=4))) == tools_sha256(tools)
    reordered = [dict(reversed(list(t.items()))) for t in tools]
    assert tools_sha256(reordered) != tools_sha256(tools) and tools_sha256(None) is None


def test_function_docs_follow_swe_smith_format(traj_dir):
    """The docs written for the xml render match, line for line, the function blocks of
    SWE-smith's own inference config for the tools they share (bash is described differently there)."""
    config = (traj_dir / "swesmith_infer.yaml").read_text()
    docs = function_docs(load_profile("swe-agent"))
    for line in docs.splitlines():
        if line.startswith(("  (", "Allowed values", "No parameters", "Parameters:")):
            assert line in config or "/testbed" in line or "bash command to execute" in line, line


def test_ingest_attaches_tools_only_where_missing(tmp_path, traj_dir):
    own = [{"type": "function", "function": {"name": "execute_bash", "description": "run", "parameters": {}}}]
    rows = write_jsonl(tmp_path / "rows.jsonl", [
        {"id": "has-own", "tools": own, "messages": [{"role": "user", "content": "go"},
                                                     {"role": "assistant", "content": "ok"}]}])
    out = tmp_path / "t.jsonl"
    srft("ingest", traj_dir / "function_calling_simple.traj", rows, "-o", out, "--tools", "swe-agent", "--quiet")
    trajs = {t.id: t for _, t in read_trajectories(str(out))}
    assert trajs.pop("has-own").tools == own
    assert [t.tools for t in trajs.values()] == [load_profile("swe-agent")]
    bad = srft("ingest", rows, "-o", tmp_path / "x.jsonl", "--tools", "nope", check=False)
    assert bad.returncode != 0 and "neither a file nor a tools profile" in bad.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_preprocess_renders_tools_and_records_their_hash(tmp_path, traj_dir, tokenizer):
    trajs = tmp_path / "t.jsonl"
    srft("ingest", traj_dir / "function_calling_simple.traj", "-o", trajs, "--quiet")
    common = ["--trajectories", trajs, "--policy", "naive", "--seq-length", 32768, "--quiet"]
    srft("preprocess", *common, "--output-prefix", tmp_path / "bare")
    srft("preprocess", *common, "--tools", "swe-agent", "--output-prefix", tmp_path / "tools")
    bare, tools = open_dataset(str(tmp_path / "bare")), open_dataset(str(tmp_path / "tools"))
    sha = tools_sha256(load_profile("swe-agent"))
    assert tools.meta["tools"] == {"override": "swe-agent", "override_sha256": sha, "sha256": {sha: 1}}
    assert bare.meta["tools"]["sha256"] == {"none": 1} and bare.meta["documents"][0]["tools_sha256"] is None
    assert tools.meta["documents"][0]["tools_sha256"] == sha
    bare_ids, tools_ids = bare.document(0)[0], tools.document(0)[0]
    assert "<tools>" in tokenizer.decode(tools_ids) and "<tools>" not in tokenizer.decode(bare_ids)
    assert bare.meta["counts"]["weighted_tokens"] == tools.meta["counts"]["weighted_tokens"]
    # on disk: before each trained run of tokens (a step, naive policy) is the template's prompt
    traj = dataclasses.replace(next(t for _, t in read_trajectories(str(trajs))), tools=load_profile("swe-agent"))
    weights = tools.document(0)[1]
    starts = [i for i in range(len(weights)) if weights[i] > 0 and (i == 0 or weights[i - 1] == 0)]
    assert len(starts) == traj.num_steps
    for start, step in zip(starts, traj.steps()):
        assert tools_ids[:start].tolist() == expected_prompt_ids(tokenizer, traj, step.index, "tools")
    bad = srft("preprocess", *common, "--tools", tmp_path / "missing.json", "--output-prefix", tmp_path / "x",
               check=False)
    assert bad.returncode != 0 and "missing.json" in bad.stderr


def test_newline_steps_are_counted_in_meta_and_report(tmp_path):
    traj = newline_trajectory()
    path = write_jsonl(tmp_path / "t.jsonl", [traj.to_json()])
    prefix = tmp_path / "nl"
    srft("preprocess", "--trajectories", path, "--policy", "naive", "--seq-length", 4096,
         "--output-prefix", prefix, "--quiet")
    meta = open_dataset(str(prefix)).meta
    assert meta["counts"]["newline_steps"] == 1
    assert meta["tools"]["sha256"] == {tools_sha256(traj.tools): 1}  # its own tools, no override
    report = srft("report", prefix)
    assert any("newline" in line and line.rstrip(" │|").endswith("1") for line in report.stdout.splitlines())
