"""Run by test_check_scaffold.py in .venv-agent (mini-swe-agent's venv): every `str_replace_editor`
and `submit` call of the given example trajectories, executed (a) in-process by
`evaluate.local_env.LocalEnvironment` and (b) as shell commands through mini-swe-agent's own
LocalEnvironment by `mini_profile.ShellTools` (what a SWE-bench container runs), must print the
same output. Prints one JSON line: {"calls": N, "differ": [[name, step, tool], ...]}."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from minisweagent.exceptions import Submitted

from srft_megatron.evaluate.local_env import LocalEnvironment, init_repo
from srft_megatron.evaluate.mini_profile import ProfileShellEnvironment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def main(names: list[str]) -> None:
    calls, differ = 0, []
    for name in names:
        data = json.loads((EXAMPLES / "trajectories" / f"{name}.traj").read_text())
        steps = [m["tool_calls"][0]["function"] for m in data["history"] if m["role"] == "assistant"]
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            ours = LocalEnvironment(init_repo(EXAMPLES / "datekit", Path(a)), "/testbed")
            repo = init_repo(EXAMPLES / "datekit", Path(b))
            shell = ProfileShellEnvironment(cwd=str(repo), timeout=60)
            shell.HISTORY_FILE = str(Path(b) / "editor-history.json")
            for k, fn in enumerate(steps, 1):
                args = json.loads(fn["arguments"])
                want = ours.execute(fn["name"], dict(args))
                mapped = json.loads(json.dumps(args).replace("/testbed", str(repo)))
                try:
                    got = shell.execute({"tool": fn["name"], "arguments": mapped})["output"]
                except Submitted as done:
                    got = done.messages[0]["content"]
                if fn["name"] == "bash":  # runs (files it writes count), but its interpreter differs: not compared
                    continue
                calls += 1
                if got.replace(str(repo), "/testbed") != want:
                    differ.append([name, k, fn["name"]])
    print(json.dumps({"calls": calls, "differ": differ}))


if __name__ == "__main__":
    main(sys.argv[1:])
