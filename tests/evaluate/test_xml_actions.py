"""SWE-agent's `xml_function_calling` parse function (evaluate/xml_actions.py) and the `swe-smith`
profile that uses it: SWE-agent's documented example and each of its refusals with its words; every
recorded step of the bundled examples, written as the xml render trains it, parses back to its call;
the evaluation agent in the swe-smith profile sends, before every step, what the xml render trained
(the profile's own driver and mini-swe-agent), up to SWE-smith's own observation elision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from srft_megatron.agent_profile import load_agent_profile
from srft_megatron.evaluate.replay import ReplayModel
from srft_megatron.evaluate.scaffold_check import check_scaffold, read_recorded
from srft_megatron.evaluate.xml_actions import XmlFormatError, format_error, parse_xml_action
from srft_megatron.render import XML_MULTILINE_PARAMS
from srft_megatron.tools import load_profile

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "trajectories").glob("*.traj"))
TOOLS = load_profile("swe-smith")


@pytest.fixture(scope="module")
def tokenizer():
    from srft_megatron import load_tokenizer

    return load_tokenizer("qwen2.5")


def test_swe_agents_documented_example_parses():
    """The example in XMLFunctionCallingParser's docstring (SWE-agent 3ea751c)."""
    message = ("Let's look at the files in the current directory.\n<function=bash>\n"
               '<parameter=command>find /testbed -type f -name "_discovery.py"</parameter>\n</function>')
    action = parse_xml_action(message, TOOLS)
    assert action.thought == "Let's look at the files in the current directory."
    assert (action.tool, action.arguments) == ("bash", {"command": 'find /testbed -type f -name "_discovery.py"'})


def test_multiline_values_lose_their_edge_newlines_and_later_text_is_thought():
    """SWE-agent strips with `re.sub(r"^\\n|\\n$", "", value)`: one newline at the start, and at the end
    two when the value ends with two (Python's `$` also matches before a final newline)."""
    message = ("Fix it.\n<function=str_replace_editor>\n<parameter=command>str_replace</parameter>\n"
               "<parameter=path>/testbed/a.py</parameter>\n<parameter=old_str>\n\n  x = 1\n</parameter>\n"
               "<parameter=new_str>\n  x = 2\n\n</parameter>\n</function>\nThen test.\n"
               "<function=submit>\n</function>")
    action = parse_xml_action(message, TOOLS)
    assert action.tool == "str_replace_editor"
    assert action.arguments == {"command": "str_replace", "path": "/testbed/a.py", "old_str": "\n  x = 1",
                                "new_str": "  x = 2"}
    assert action.thought == "Fix it.\n\nThen test.\n<function=submit>\n</function>"  # one call: the first


def test_swe_gym_names_and_view_range():
    assert parse_xml_action("<function=finish>\n</function>", TOOLS).tool == "submit"
    assert parse_xml_action("<function=execute_bash>\n<parameter=command>ls</parameter>\n</function>",
                            TOOLS).arguments == {"command": "ls"}
    view = parse_xml_action("<function=str_replace_editor>\n<parameter=command>view</parameter>\n"
                            "<parameter=path>/testbed</parameter>\n<parameter=view_range>[3,  9]</parameter>\n"
                            "</function>", TOOLS)
    assert view.arguments["view_range"] == [3, 9]


@pytest.mark.parametrize("message, error", [
    ("I will look around.", "No function found in model response."),
    ("<function=bash><parameter=command>ls</parameter></function>", "No function found in model response."),
    ("<function=python>\n<parameter=code>1</parameter>\n</function>",
     "Command 'python' not found in list of available commands."),
    ("<function=str_replace_editor>\n<parameter=command>view</parameter>\n<parameter=path>/testbed/a.py"
     "</parameter>\n<parameter=view_range>[5, -1]</parameter>\n</function>",
     "view_range must be in the format [<start>, <end>], got [5, -1]."),
    ("<function=str_replace_editor>\n<parameter=command>view</parameter>\n</function>",
     "Required argument(s) missing: path"),
    ("<function=bash>\n<parameter=command>ls</parameter>\n<parameter=timeout>5</parameter>\n"
     "<parameter=cwd>/</parameter>\n</function>", "Unexpected argument(s): cwd, timeout"),
])
def test_refusals_use_swe_agents_messages(message, error):
    with pytest.raises(XmlFormatError) as err:
        parse_xml_action(message, TOOLS)
    assert str(err.value) == error
    # SWE-agent's FormatError has no error_code: its template's last branch
    assert format_error(str(err.value)) == f"Your action could not be parsed properly: {error}.\n"


def test_every_recorded_step_in_the_xml_render_parses_back_to_its_call():
    calls = lost = 0
    for path in EXAMPLES:
        traj, _ = read_recorded(path)
        for step, reply in zip(traj.steps(), ReplayModel.from_trajectory(traj, "xml").steps):
            (call,) = step.message["tool_calls"]
            recorded = json.loads(call["function"]["arguments"])
            action = parse_xml_action(reply["content"], TOOLS)
            assert action.tool == call["function"]["name"] and action.thought == (step.message["content"] or "")
            # SWE-smith writes old_str/new_str/file_text between newlines; SWE-agent's strip then also
            # takes a value's own final newline (a created file loses its last newline, as there)
            expected = {k: v if k == "view_range" else str(v)[:-1] if k in XML_MULTILINE_PARAMS
                        and str(v).endswith("\n") else str(v) for k, v in recorded.items()}
            assert action.arguments == expected
            lost += expected != {k: v if k == "view_range" else str(v) for k, v in recorded.items()}
            calls += 1
    assert calls == 74 and lost >= 1


def _full_history(tmp_path: Path) -> str:
    """The swe-smith profile without SWE-smith's inference-time observation elision."""
    data = yaml.safe_load((ROOT / "srft_megatron" / "agent_profiles" / "swe-smith.yaml").read_text())
    data.update(name="swe-smith-full", history_processors=[])
    path = tmp_path / "swe-smith-full.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_swe_smith_agent_sends_the_xml_training_context(path, tokenizer, tmp_path):
    """The swe-smith profile's system prompt (its function docs), the calls written in the text and
    the observations as user turns equal the xml render of the recorded run at every step."""
    summary = check_scaffold(path, load_agent_profile(_full_history(tmp_path)), tokenizer).summary()
    assert summary["steps_compared"] == read_recorded(path)[0].num_steps
    assert summary["mismatched_steps"] == 0, summary["first_mismatch"]


def test_swe_smith_as_shipped_elides_observations_from_step_7(tokenizer):
    """SWE-smith infers with last_n_observations: 5 but its training renders hold every observation."""
    path = EXAMPLES[0].parent / "datekit-2__wandering.traj"
    summary = check_scaffold(path, load_agent_profile("swe-smith"), tokenizer).summary()
    assert [s["step"] for s in summary["steps"] if s["first_diff"] is not None] == list(range(7, 14))
    assert summary["first_mismatch"]["got"] == "Old"


def test_mini_swe_agent_runs_the_xml_profile(agent_python, tokenizer, tmp_path):
    """mini-swe-agent's ProfileModel parses the replayed text replies with the xml parser, sends no
    tools, answers with user turns: the same tokens as the xml render, and its trajectory ingests."""
    path = EXAMPLES[0].parent / "datekit-1__clean.traj"
    out = tmp_path / "mini.traj.json"
    result = check_scaffold(path, load_agent_profile(_full_history(tmp_path)), tokenizer, agent_traj_path=out,
                            agent_python=agent_python)
    summary = result.summary()
    assert summary["driver"] == "mini-swe-agent" and summary["mismatched_steps"] == 0
    assert summary["steps_compared"] == read_recorded(path)[0].num_steps
    written = json.loads(out.read_text())
    assert written["info"]["exit_status"] == "Submitted"
    assert not any(m.get("tool_calls") for m in written["messages"])
    assert {m["role"] for m in written["messages"][2:]} <= {"assistant", "user", "exit"}
