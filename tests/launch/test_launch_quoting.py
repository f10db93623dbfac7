"""No user string reaches a shell: `srft launch --dry-run` with a command substitution in the run
dir, in a stage argument and in an executor.env value runs nothing, and the generated sbatch
scripts, executed with `srun` and `scontrol` stubbed, hand each stage exactly the argv and the
environment the spec says. (The end-to-end run with a space in the run dir is in
test_nemorun_pipeline.py, on the real cluster.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.launch.conftest import ROOT

STUB_SRUN = """#!{python}
import json, os, sys
with open(os.environ["SRUN_LOG"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in
                          ("EVIL", "SRFT_RUN_DIR", "SRFT_REPO", "SRFT_CRITIC_MODEL")}},
                          "path": os.environ["PATH"].split(":")[0]}}) + "\\n")
"""
# srun's own options in nemo-run's line end with this one; the stage's command follows
LAST_SRUN_OPTION = "--kill-on-bad-exit=1"


def _scripts(dry_run_output: str) -> dict[str, str]:
    parts = re.split(r"^##### stage (\w+).*$", dry_run_output, flags=re.MULTILINE)
    scripts = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = body.strip("\n").splitlines()
        assert lines[0].startswith("$ sbatch "), lines[0]
        scripts[name] = "\n".join(lines[1:]) + "\n"
    return scripts


def test_injection_strings_are_passed_as_data_never_run(launch_python, tmp_path):
    canary = tmp_path / "canary"
    canary.mkdir()
    evil = f"$(touch {canary}/PWNED)"
    run_dir = tmp_path / f"my run {evil}"
    stage_arg = f"a;touch {canary}/PWNED2 {evil}"
    env_value = f"x; touch {canary}/PWNED3 `touch {canary}/PWNED4`"
    spec = {"executor": {"kind": "slurm", "account": "ci", "time": "00:10:00", "env": {"EVIL": env_value}},
            "stages": {"label": {"env": {"SRFT_CRITIC_MODEL": "/models/critic"}, "extra_args": [stage_arg]},
                       "preprocess": {"args": ["--trajectories", "{data}/trajectories.jsonl", stage_arg]},
                       "train": {"args": ["--config", "{configs}/train.yaml", "--run-dir", "{train}", stage_arg]}}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    links = tmp_path / "links"
    env = dict(os.environ, SRFT_LAUNCH_LINKS=str(links), COLUMNS="200")
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "launch", str(path), "--run-dir", str(run_dir),
                           "--dry-run"], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not list(canary.iterdir())                     # the dry run executed nothing
    assert not list((run_dir / "logs").iterdir())         # and submitted nothing
    scripts = _scripts(proc.stdout)
    assert list(scripts) == ["label", "preprocess", "train"]

    # run each generated script with srun and scontrol stubbed: they record what they receive
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(STUB_SRUN.format(python=sys.executable))
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho n1\n")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    real = str(run_dir.resolve())
    expected = {
        "label": ["bash", f"{ROOT}/slurm/critic_task.sh", "--trajectories", f"{real}/data/trajectories.jsonl",
                  "--output", f"{real}/labels/labels.jsonl", stage_arg],
        "preprocess": [f"{ROOT}/.venv/bin/python", "-m", "srft_megatron.launch.entry", "preprocess",
                       "--trajectories", f"{real}/data/trajectories.jsonl", stage_arg],
        "train": ["-m", "srft_megatron.cli", "train", "--config", f"{real}/configs/train.yaml",
                  "--run-dir", f"{real}/train", stage_arg],
    }
    for name, script in scripts.items():
        file = tmp_path / f"{name}.sbatch"
        file.write_text(script)
        assert subprocess.run(["bash", "-n", str(file)]).returncode == 0, name
        log = tmp_path / f"srun-{name}.jsonl"
        job_env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SRUN_LOG": str(log), "SLURM_JOB_NODELIST": "n1",
                   "SLURM_JOB_ID": "7", "HOME": str(tmp_path)}
        done = subprocess.run(["bash", str(file)], env=job_env, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        stage = calls[-1]                                 # the first call is nemo-run's `hostname` probe
        argv = stage["argv"][stage["argv"].index(LAST_SRUN_OPTION) + 1:]
        if name == "train":                               # torchrun's own options, then the script
            assert argv[0] == "torchrun"
            argv = argv[argv.index("-m"):]
        assert argv == expected[name], name
        assert stage["env"]["EVIL"] == env_value and stage["env"]["SRFT_RUN_DIR"] == real
        assert stage["env"]["SRFT_REPO"] == str(ROOT) and stage["path"] == f"{ROOT}/.venv/bin"
        # nemo-run's own paths (logs, experiment dir) go through the shell-safe link to the run dir
        out = stage["argv"][stage["argv"].index("--output") + 1]
        assert out.startswith(str(links)) and Path(out).parent.resolve() == Path(real) / "logs"
        if name == "label":
            assert stage["env"]["SRFT_CRITIC_MODEL"] == "/models/critic"
    assert not list(canary.iterdir())                     # nothing ran at job time either



def test_unsafe_link_dir_is_refused_in_one_line_before_anything_runs(launch_python, tmp_path):
    """Where nemo-run would get an unsafe path of ours, the launch stops with one line naming it."""
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(yaml.safe_dump({"executor": {"kind": "slurm"}, "stages": {"convert": {}}}))
    env = dict(os.environ, SRFT_LAUNCH_LINKS=str(tmp_path / "links; x"))
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "srft"), "launch", str(spec), "--run-dir",
                           str(tmp_path / "a run"), "--dry-run"], env=env, capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 2 and "##### stage" not in proc.stdout
    error = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "run-dir link" in error[0] and "links; x" in error[0], proc.stderr[-2000:]
    assert not (tmp_path / "links; x").exists()
