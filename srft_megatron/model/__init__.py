"""Qwen2.5 model shapes and the megatron-core model provider."""
