"""Checkpoint conversion Megatron <-> Hugging Face for Qwen2/Qwen2.5 (issue 4).

- `mapping`: the declarative name/transform table (QKV interleave, gate/up, vocab padding).
- `hf_io`: lazy safetensors reading, streaming sharded writing, HF directory files.
- `megatron_io`: HF -> megatron-core dist checkpoint (via the trainer's model provider and
  checkpoint module), and streaming dist checkpoint -> HF.
- `verify`: run both models on the same tokens and compare logits.
"""
