"""mini-swe-agent's SWE-bench batch runner, with an agent that ends runs as SWE-agent does.

Why: on a step/cost limit or repeated format errors SWE-agent autosubmits the working tree's
diff (`submitted (exit_cost)`, `submitted (exit_format)`), mini-swe-agent submits an empty patch
(`mini_profile.SweAgentExits`). mini-swe-agent loads agent classes by import path in its `mini`
and `swebench_single` runners, but its batch runner (`minisweagent.run.benchmarks.swebench`,
2.4.6) builds its `ProgressTrackingAgent` by name and has no `agent_class` setting. This entry
point binds that name to `mini_profile.ProfileBatchAgent` (a subclass: progress reporting kept),
then runs the batch runner's own command line: dataset, filters, workers, `preds.json`,
trajectories and resumption stay its code, and no installed file is changed. `srft evaluate
--profile` runs it in .venv-agent with the repository on PYTHONPATH (evaluate/agent.py):

    .venv-agent/bin/python -m srft_megatron.evaluate.mini_batch --subset verified --split test -o OUT -c ...
"""

from __future__ import annotations

from minisweagent.run.benchmarks import swebench

from srft_megatron.evaluate.mini_profile import ProfileBatchAgent


def main() -> None:
    if not hasattr(swebench, "ProgressTrackingAgent"):  # another mini-swe-agent than the pinned one
        raise SystemExit("mini-swe-agent's swebench runner has no ProgressTrackingAgent: "
                         "use the version scripts/agent_venv.lock pins")
    swebench.ProgressTrackingAgent = ProfileBatchAgent
    swebench.app()


if __name__ == "__main__":
    main()
