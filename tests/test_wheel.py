"""The package holds everything its stages run: built as a wheel and installed (not editable), it
runs `srft ingest`, `srft preprocess` and `srft train --config tiny` from an empty directory, and
finds the shipped pipeline specs by name."""

from __future__ import annotations

import json
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "trajectories"

pytestmark = pytest.mark.slow


def run(*cmd, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def test_installed_wheel_runs_the_data_path_and_training_from_an_empty_directory(tmp_path):
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation", "-q", "-w", wheels,
        cwd=tmp_path)
    (wheel,) = wheels.glob("srft_megatron-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    # The dependencies come from the project venv (a .pth line: not a site dir, so its editable
    # install of srft_megatron is not seen); srft_megatron itself only from the wheel.
    py = venv / "bin" / "python"
    target = Path(run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip())
    (target / "srft-deps.pth").write_text(site.getsitepackages()[0] + "\n")
    run(sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", target, wheel, cwd=tmp_path)

    work = tmp_path / "empty"
    work.mkdir()
    where = run(py, "-c", "import srft_megatron; print(srft_megatron.__file__)", cwd=work).stdout.strip()
    assert Path(where).is_relative_to(target), where
    srft = [py, "-m", "srft_megatron.cli"]
    run(*srft, "ingest", SHARED / "function_calling_simple.traj", "-o", "t.jsonl", "--quiet", cwd=work)
    run(*srft, "preprocess", "--trajectories", "t.jsonl", "--policy", "naive", "--tools", "swe-agent",
        "--seq-length", 2048, "--output-prefix", "data/naive", "--quiet", cwd=work)   # template + profile
    run(*srft, "train", "--config", "tiny", "--run-dir", "run", "model.name=tiny-qwen-vocab",  # config by name
        "model.seq_length=2048", "data.prefixes=[data/naive]", "train.steps=1", "train.global_batch_size=1",
        "logging.tensorboard=false", cwd=work)
    metrics = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1] and metrics[0]["weighted_tokens"] > 0
    assert (work / "run" / "checkpoints" / "latest").is_file()
    run(*srft, "launch", "--help", cwd=work)
    # pipeline specs are package data: a shipped spec by name, loaded and checked from the wheel
    # (launching itself runs a checkout on the shared filesystem: `srft launch` refuses without one)
    check = ("from pathlib import Path; from srft_megatron.launch.pipeline import load_pipeline, resolve_pipeline; "
             "from srft_megatron.launch.rundir import RunDir; p = resolve_pipeline('tiny-cpu'); "
             "s = load_pipeline(p, RunDir.at('r'), Path('repo')); print(p); print(','.join(x.name for x in s.stages))")
    spec_path, stages = run(py, "-c", check, cwd=work).stdout.split()
    assert Path(spec_path).is_relative_to(target) and stages == "ingest,preprocess,train,convert", (spec_path, stages)
    refused = subprocess.run([*map(str, srft), "launch", "tiny-cpu", "--run-dir", "r", "--dry-run"], cwd=work,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "source checkout" in refused.stderr, refused.stderr
