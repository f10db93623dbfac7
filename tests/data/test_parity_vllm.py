"""The same parity as test_parity.py, asked of a real vLLM CPU server's `POST /tokenize`.

This is the inference side itself: the request an agent sends (OpenAI messages with JSON-string
tool-call arguments, plus `tools`, `add_generation_prompt=True`) is tokenised by vLLM with its
own transformers version and chat-template code path. The served model is a tiny random Qwen2
whose directory holds the real Qwen2.5 tokenizer and our chat template
(`srft_megatron.load_tokenizer("qwen2.5").save_pretrained`); only its tokenizer matters here.
One server for the session (tests/conftest.py, shared with the scaffold check), then one request per step and render mode.
"""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from srft_megatron.render import template_messages
from tests.conftest import QWEN_TOKENIZER_SERVED as SERVED
from tests.data.test_parity import (brought_trajectories, check_parity,  # noqa: F401 (fixtures)
                                    example_trajectories, newline_trajectory, with_agent_tools)

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def tokenize_server(qwen_tokenizer_server):
    """A client of the session's vLLM server with the Qwen2.5 tokenizer (tests/conftest.py)."""
    with httpx.Client(base_url=qwen_tokenizer_server.url.removesuffix("/v1"), timeout=120) as client:
        yield client


def vllm_prompt_ids(client: httpx.Client):
    def expected(tokenizer, traj, index, mode):
        if mode == "tools":  # what the agent sends: its OpenAI messages and tools, as they are
            messages = [{k: v for k, v in m.items() if k != "is_demo"} for m in traj.messages[:index]]
            body = {"messages": messages, "tools": traj.tools}
        else:
            full = template_messages(traj, "xml", traj.tools)
            body = {"messages": full[: index + len(full) - len(traj.messages)]}
        reply = client.post("/tokenize", json={"model": SERVED, "add_generation_prompt": True, **body})
        assert reply.status_code == 200, reply.text[:2000]
        return reply.json()["tokens"]
    return expected


@pytest.mark.parametrize("mode", ["tools", "xml"])
def test_context_before_every_step_is_what_vllm_tokenises(tokenize_server, tokenizer, trajectories,
                                                          example_trajectories, mode):
    checked, with_tools = 0, 0
    for traj in [*trajectories, *example_trajectories]:
        traj = with_agent_tools(traj)
        with_tools += traj.tools is not None
        checked += check_parity(tokenizer, traj, mode, expected=vllm_prompt_ids(tokenize_server))
    assert with_tools >= 10 and checked >= 100


def test_demo_turns_and_newline_steps_against_vllm(tokenize_server, tokenizer, trajectories):
    """Demo turns in the history are context for vLLM too; a newline-start step differs only
    where test_parity.py says it may."""
    real = next(with_agent_tools(t) for t in trajectories if t.num_steps >= 4
                and any(m.get("tool_calls") for m in t.messages))
    first = real.step_message_indices[0]
    demo = [dict(m, is_demo=True) for m in real.messages[first:first + 4]]
    traj = dataclasses.replace(real, id="with-demo", messages=[*real.messages[:first], *demo, *real.messages[first:]])
    assert check_parity(tokenizer, traj, "tools", expected=vllm_prompt_ids(tokenize_server)) == real.num_steps
    assert check_parity(tokenizer, newline_trajectory(), "tools", expected=vllm_prompt_ids(tokenize_server)) == 3


def test_real_demonstrations_and_own_tools_against_vllm(tokenize_server, tokenizer, brought_trajectories):
    """SWE-agent's real demonstration in the history, SWE-Gym rows with their own tools and two
    calls in one turn (the second row's final step starts with a newline)."""
    for traj in brought_trajectories:
        for mode in ("tools", "xml"):
            assert check_parity(tokenizer, with_agent_tools(traj), mode,
                                expected=vllm_prompt_ids(tokenize_server)) == traj.num_steps
