"""Fixtures for the evaluation tests: the agent venv (mini-swe-agent + swebench) and real
harness report files made by the swebench package's own grading and reporting code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AGENT_PY = ROOT / ".venv-agent" / "bin" / "python"


def srft(*args, check: bool = True) -> subprocess.CompletedProcess:
    """`srft ARGS` through this interpreter from the repository root; with `check`, exit 0 or the
    test fails with the command's stderr."""
    proc = subprocess.run([sys.executable, "-m", "srft_megatron.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert not check or proc.returncode == 0, proc.stderr[-3000:]
    return proc

# Two models, 5 instances (one of them the real prediction in shared all_preds.jsonl), designed
# so the statistics are easy to check by hand:
#   srft: rollouts resolve {P, a, b}, {P, a}, {a, b, c}  -> 60, 40, 60 %
#   rft:  rollouts resolve {P, a}, {a}                   -> 40, 20 %   (2 rollouts: unequal counts)
P = "pydicom__pydicom-1458"
INSTANCES = [P, "example__repo-1", "example__repo-2", "example__repo-3", "example__repo-4"]
A, B, C, D = INSTANCES[1:]
SPECS = {
    "srft": [{"run_id": "srft-r1", "resolved": [P, A, B], "empty": [D]},
             {"run_id": "srft-r2", "resolved": [P, A], "missing": [D]},
             {"run_id": "srft-r3", "resolved": [A, B, C]}],
    "rft": [{"run_id": "rft-r1", "resolved": [P, A]},
            {"run_id": "rft-r2", "resolved": [A], "empty": [C], "missing": [D]}],
}


@pytest.fixture(scope="session")
def agent_python() -> Path:
    """.venv-agent, created by the repo's own script (idempotent; ~2 min on a fresh machine)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "agent_venv.sh")], check=True, timeout=1200)
    return AGENT_PY


@pytest.fixture(scope="session")
def harness_reports(agent_python, traj_dir, tmp_path_factory) -> dict[str, list[Path]]:
    """{model: [summary report per rollout]}, written by swebench's make_run_report."""
    out = tmp_path_factory.mktemp("harness")
    result = {}
    for model, rollouts in SPECS.items():
        spec = {"instances": INSTANCES, "predictions": str(traj_dir / "all_preds.jsonl"),
                "model": f"{model}-model", "rollouts": rollouts}
        spec_path = out / f"{model}.spec.json"
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.run([str(agent_python), str(Path(__file__).parent / "make_harness_reports.py"),
                               str(spec_path), str(out / model)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result[model] = [Path(p) for p in json.loads(proc.stdout.strip().splitlines()[-1])]
    return result
