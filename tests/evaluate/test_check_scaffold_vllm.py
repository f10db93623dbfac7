"""`srft check-scaffold --endpoint`: the agent's requests, tokenised by a real vLLM CPU server's
`POST /tokenize` (its own transformers and chat-template code path, the tools and JSON-string
tool-call arguments as the agent sends them), equal the training render at every step.

The served model is a tiny random Qwen2 holding the real Qwen2.5 tokenizer and our chat template;
only its tokenizer matters. One server for the session (tests/conftest.py, shared with the data parity test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import QWEN_TOKENIZER_SERVED

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "trajectories"
SERVED = QWEN_TOKENIZER_SERVED


@pytest.fixture(scope="module")
def endpoint(qwen_tokenizer_server):
    """The session's vLLM server with the Qwen2.5 tokenizer (tests/conftest.py)."""
    return qwen_tokenizer_server.url


@pytest.mark.parametrize("name", ["datekit-2__wandering", "datekit-3__misused_tools"])
def test_every_step_is_what_vllm_tokenises(endpoint, name, tmp_path):
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "check-scaffold", "--trajectory",
                           str(EXAMPLES / f"{name}.traj"), "--endpoint", endpoint, "--served-name", SERVED,
                           "--json", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["mismatched_steps"] == 0 and summary["steps_compared"] == summary["recorded_steps"] >= 7
    assert "vLLM /tokenize" in proc.stdout


def test_swe_smith_xml_requests_are_what_vllm_tokenises(endpoint, tmp_path):
    """The xml profile (no tools sent; calls in the text, observations as user turns), without
    SWE-smith's observation elision, against vLLM's /tokenize: the xml training render at every step."""
    import yaml

    data = yaml.safe_load((ROOT / "srft_megatron" / "agent_profiles" / "swe-smith.yaml").read_text())
    data.update(name="swe-smith-full", history_processors=[])
    profile = tmp_path / "swe-smith-full.yaml"
    profile.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", "check-scaffold", "--trajectory",
                           str(EXAMPLES / "datekit-3__misused_tools.traj"), "--profile", str(profile), "--endpoint",
                           endpoint, "--served-name", SERVED, "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    assert summary["mismatched_steps"] == 0 and summary["steps_compared"] == summary["recorded_steps"] >= 7
