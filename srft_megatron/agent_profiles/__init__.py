"""Agent profiles shipped as package data (see srft_megatron/agent_profiles.py)."""
