"""One named profile decides the context everywhere: `srft preprocess --profile NAME` renders with
the profile's render mode and tools (the tokens of `--render/--tools` spelled out, and of records
ingested with `--tools NAME`), `--tools NAME` accepts an agent profile's name, and the critic
transcript of a trajectory carrying them shows the profile's tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srft_megatron.agent_profile import load_agent_profile
from srft_megatron.critic.transcript import split_pieces
from srft_megatron.io import iter_jsonl
from srft_megatron.tools import function_docs, load_tools
from srft_megatron.trajectory import Trajectory
from tests.evaluate.conftest import ROOT, srft

EXAMPLES = sorted((ROOT / "examples" / "trajectories").glob("*.traj"))


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("ingest")
    srft("ingest", *EXAMPLES, "-o", out / "bare.jsonl", "--quiet")
    srft("ingest", *EXAMPLES, "-o", out / "with-tools.jsonl", "--tools", "swe-agent", "--quiet")
    return {"bare": out / "bare.jsonl", "with-tools": out / "with-tools.jsonl", "dir": out}


def _preprocess(trajectories: Path, prefix: Path, *extra) -> dict:
    srft("preprocess", "--trajectories", trajectories, "--policy", "naive", "--seq-length", 16384,
         "--output-prefix", prefix, "--quiet", *extra)
    return json.loads(Path(f"{prefix}.meta.json").read_text())


@pytest.mark.parametrize("profile, spelled_out", [("swe-agent", ["--render", "tools", "--tools", "swe-agent"]),
                                                  ("swe-smith", ["--render", "xml", "--tools", "swe-smith"])])
def test_preprocess_with_a_profile_gives_the_tokens_of_its_render_and_tools(ingested, profile, spelled_out):
    out = ingested["dir"]
    by_profile = _preprocess(ingested["bare"], out / f"{profile}-profile", "--profile", profile)
    by_flags = _preprocess(ingested["bare"], out / f"{profile}-flags", *spelled_out)
    assert by_profile["render"] == load_agent_profile(profile).render
    assert by_profile["counts"]["documents"] == len(EXAMPLES) and by_profile["counts"]["tokens"] > 0
    a = Path(f"{out / f'{profile}-profile'}_tokens.bin").read_bytes()
    b = Path(f"{out / f'{profile}-flags'}_tokens.bin").read_bytes()
    assert a == b
    assert by_profile["tools"]["override_sha256"] == by_flags["tools"]["override_sha256"] is not None
    if profile == "swe-agent":  # the records' own tools (ingest --tools swe-agent), rendered by default
        default = _preprocess(ingested["with-tools"], out / "default")
        assert Path(f"{out / 'default'}_tokens.bin").read_bytes() == a
        assert list(default["tools"]["sha256"]) == [by_profile["tools"]["override_sha256"]]


def test_profile_and_contradicting_flags_are_refused_in_one_line(ingested, tmp_path):
    proc = srft("preprocess", "--trajectories", ingested["bare"], "--policy", "naive", "--seq-length", 4096,
                "--output-prefix", tmp_path / "x", "--profile", "swe-smith", "--render", "tools", check=False)
    assert proc.returncode == 2 and "--render tools contradicts --profile swe-smith" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_tools_by_agent_profile_name_and_in_the_critic_transcript(ingested, tmp_path):
    for name in ("swe-agent", "swe-smith"):
        assert load_tools(name) == load_agent_profile(name).tool_schemas()
    profile_yaml = ROOT / "srft_megatron" / "agent_profiles" / "swe-smith.yaml"
    assert load_tools(str(profile_yaml)) == load_agent_profile("swe-smith").tool_schemas()
    srft("ingest", EXAMPLES[0], "-o", tmp_path / "t.jsonl", "--tools", "swe-smith", "--quiet")
    ((_, row),) = list(iter_jsonl(tmp_path / "t.jsonl"))
    traj = Trajectory.from_json(row)
    first = split_pieces(traj)[0]
    docs = function_docs(load_agent_profile("swe-smith").tool_schemas())
    assert first.message == -1 and first.body == docs
    # what the critic reads is what the swe-smith agent's system prompt documents, word for word
    assert docs in load_agent_profile("swe-smith").templates["system_template"]
