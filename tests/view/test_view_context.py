"""The viewer shows the context the dataset trains with: the agent's tools and demonstration
turns (context, never numbered as steps), computed by the same renderer as `srft preprocess`.
No browser needed: these read the page model and the HTML text."""

from __future__ import annotations

import dataclasses
import json

from srft_megatron import load_tokenizer
from srft_megatron.policy import PRESETS
from srft_megatron.render import StepRenderer
from srft_megatron.tools import load_profile
from srft_megatron.trajectory import read_trajectories
from srft_megatron.view import build_view, page
from tests.conftest import ROOT
from tests.data.conftest import srft


def _example(tmp_path):
    out = tmp_path / "t.jsonl"
    srft("ingest", ROOT / "examples" / "trajectories" / "datekit-1__clean.traj", "-o", out, "--quiet")
    return next(t for _, t in read_trajectories(str(out)))


def test_view_shows_tools_and_demonstration_turns(tmp_path):
    real = _example(tmp_path)
    first = real.step_message_indices[0]
    demo = [dict(m, is_demo=True) for m in real.messages[first:first + 2]]
    traj = dataclasses.replace(real, messages=[*real.messages[:first], *demo, *real.messages[first:]],
                               tools=load_profile("swe-agent"))
    renderer = StepRenderer(load_tokenizer("qwen2.5"), "tools")
    view = build_view(traj, None, renderer, PRESETS["naive"])
    rendered = renderer.render(traj)
    assert view.tool_names == ["bash", "str_replace_editor", "submit"]
    assert [s.step for s in view.steps] == list(range(1, real.num_steps + 1))
    assert [o.demo for o in view.prompt] == [False] * first + [True, True]
    assert demo[0]["tool_calls"][0]["function"]["name"] in view.prompt[first].text
    assert view.prompt_tokens == rendered.steps[0].start and view.total_tokens == len(rendered.input_ids)
    html = page([view], "t", "s")
    assert "tools given to the agent: bash, str_replace_editor, submit" in html
    assert html.count("demonstration (context, not a step)") == 2 and "2 demonstration turns" in html
    assert json.dumps("runs the given command directly in bash") in html.replace("&quot;", '"')


def test_view_tools_override_from_the_command_line(tmp_path):
    real = _example(tmp_path)
    traj_file = tmp_path / "one.jsonl"
    traj_file.write_text(json.dumps(real.to_json()) + "\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"id": real.id, "steps": [{"step": k, "label": "good", "confidence": None}
                                                            for k in range(1, real.num_steps + 1)]}) + "\n")
    srft("view", traj_file, labels, "-o", tmp_path / "plain.html", "--quiet")
    srft("view", traj_file, labels, "-o", tmp_path / "tools.html", "--tools", "swe-agent", "--quiet")
    assert "tools given to the agent" not in (tmp_path / "plain.html").read_text()
    assert "tools given to the agent: bash, str_replace_editor, submit" in (tmp_path / "tools.html").read_text()
    bad = srft("view", traj_file, labels, "-o", tmp_path / "x.html", "--tools", "nope", check=False)
    assert bad.returncode != 0 and "tools profile" in bad.stderr
