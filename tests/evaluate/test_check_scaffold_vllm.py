"""`srft check-scaffold --endpoint`: the agent's requests, tokenised by a real vLLM CPU server's
`POST /tokenize` (its own transformers and chat-template code path, the tools and JSON-string
tool-call arguments as the agent sends them), equal the training render at every step.

The served model is a tiny random Qwen2 holding the real Qwen2.5 tokenizer and our chat template;
only its tokenizer matters. One server for the module (~30 s to start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "trajectories"
SERVED = "qwen-tokenizer"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    from tests.convert.tiny_hf import save_tiny_qwen2
    from tests.vllm_server import VllmServer

    model = save_tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen-tok") / "model", vocab_size=151936,
                            tokenizer=True, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                            max_position_embeddings=32768)
    for attempt in (1, 2):  # a first start can die of another process's /dev/shm clean-up (test_parity_vllm)
        server = VllmServer(model, served_name=SERVED, max_model_len=32768).start()
        try:
            server.wait_ready()
            break
        except RuntimeError:
            server.stop()
            if attempt == 2:
                raise
    yield server.url
    server.stop()


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
