"""Loaded by mini-swe-agent (in .venv-agent) by import path in test_autosubmit.py: the replay
model of `srft check-scaffold`, whose request after `overflow_after` replies fails as a request
past the context window does (litellm's ContextWindowExceededError, what it makes of vLLM's
"maximum context length" error): a step that raises, without a server."""

from __future__ import annotations

import litellm

from srft_megatron.evaluate.mini_profile import ReplayModel, ReplayModelConfig


class OverflowModelConfig(ReplayModelConfig):
    overflow_after: int


class OverflowModel(ReplayModel):
    def __init__(self, **kwargs):
        super().__init__(config_class=OverflowModelConfig, **kwargs)

    def query(self, messages: list[dict], **kwargs) -> dict:
        if self.n >= self.config.overflow_after:
            raise litellm.exceptions.ContextWindowExceededError(
                "This model's maximum context length is 32768 tokens", model="replay", llm_provider="openai")
        return super().query(messages, **kwargs)
