"""Critic labelling (DESIGN §2): the prompt, the step-numbered transcript with observation
shortening, the bounded answer schema, the multi-replica async client, the resumable writer,
and the metrics of `srft critic-eval`.

One module per concern: `prompt` (default rubric prompt, `--prompt FILE`), `transcript`
(rendering + token budget), `schema` (JSON schema + validation), `client` (replica pool over
OpenAI-compatible HTTP), `writer` (append-only resumable JSONL), `labeller` (the run loop),
`metrics` (precision / recall / F1 against expert labels).
"""
