"""Evaluation on SWE-bench with repeated rollouts and honest statistics.

Modules: `serve` (vLLM server), `agent` (mini-swe-agent rollouts), `harness` (swebench
`run_evaluation`), `rollouts` (the resumable run directory of `srft evaluate`), `results`
(reading the harness's summary reports and prediction files), `stats` (resolved %, mean ± std,
pass@k, paired bootstrap), `summary` and `plot` (what `srft report-eval` prints and writes).
The scaffold: `editor` (SWE-agent's `str_replace_editor`), `local_env` (tool calls on a local
checkout), `function_calls` and `xml_actions` (SWE-agent's parse functions: which replies it
takes, what it answers), `replay` (an agent profile's message building with a replay model),
`mini_profile` (the same profile inside mini-swe-agent, runs in .venv-agent), `mini_batch`
(mini-swe-agent's SWE-bench batch runner with that agent), `scaffold_check` (`srft check-scaffold`).
"""
