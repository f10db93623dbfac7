"""The paper's experiment matrix: train, convert and evaluate every row with one command.

Each row (base, naive, RFT, unresolved-only, unresolved-masked, SRFT, all-masked) is one
`srft launch` pipeline (preprocess → train → convert → evaluate) in its own run directory,
made from the matrix config's shared pipeline with the row's policy filled in; the base row
only evaluates the base model. On SLURM the rows are submitted detached, so they run in
parallel, each an afterok chain; `report` then compares them with `srft report-eval`.
The command is `srft matrix` (`srft_megatron/commands/matrix.py`); this module is its logic.

Row values substituted here: {row} {policy} {seed} {trajectories} {labels} {base_model}
{base_checkpoint} {train_config};
the run-dir placeholders ({datasets}, {train}, {hf}, {eval}, ...) are left to `srft launch`.
"""

from __future__ import annotations

import copy
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from srft_megatron import settings
from srft_megatron.errors import ConfigError
from srft_megatron.io import atomic_open, atomic_path
from srft_megatron.launch.pipeline import build_pipeline
from srft_megatron.launch.rundir import RunDir
from srft_megatron.policy import PRESETS

# each row's `srft launch` and the report's `srft report-eval` run with this interpreter's srft
SRFT = [sys.executable, "-m", "srft_megatron.cli"]
_TOP_KEYS = {"name", "runs_root", "trajectories", "labels", "base_model", "base_checkpoint", "train_config",
             "seeds", "rows", "compare", "pipeline"}
ROW_KEYS = ("row", "policy", "seed", "trajectories", "labels", "base_model", "base_checkpoint", "train_config")


@dataclass
class Row:
    name: str                   # the run's name: the row, or ROW-sSEED with several training seeds
    group: str                  # the matrix row (the report pools a row's seeds into one model)
    policy: str | None          # None: evaluate the base model only
    seed: int | None
    run_dir: Path
    spec_path: Path
    spec: dict


def load_matrix(path: str | Path) -> dict:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the matrix config: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a matrix config is a mapping")
    unknown = sorted(set(raw) - _TOP_KEYS)
    missing = sorted({"runs_root", "rows", "pipeline"} - set(raw))
    if unknown or missing:
        raise ConfigError(f"{path}: unknown keys {unknown} / missing keys {missing}")
    for name, row in raw["rows"].items():
        row = row or {}
        if not row.get("evaluate_only") and row.get("policy") not in PRESETS:
            raise ConfigError(f"{path}: row {name!r} needs a policy from {', '.join(PRESETS)} "
                              "(or evaluate_only: true)")
    seeds = raw.get("seeds", [None])
    if not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"{path}: seeds must be a list of distinct training seeds")
    if "seeds" not in raw and "{seed}" in yaml.safe_dump(raw["pipeline"]):
        raise ConfigError(f"{path}: the pipeline uses {{seed}} but no seeds are given")
    for pair in raw.get("compare", []) or []:
        if len(pair) != 2 or any(p not in raw["rows"] for p in pair):
            raise ConfigError(f"{path}: compare entry {pair} must name two rows")
    return raw


def _fill(value, values: dict[str, str]):
    """Substitute only the row placeholders; leave `srft launch`'s own for it."""
    if isinstance(value, str):
        for key, val in values.items():
            value = value.replace("{" + key + "}", val)
        return value
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


def build_rows(matrix: dict, base_dir: Path, only: list[str] | None = None) -> list[Row]:
    """One pipeline spec (the `srft launch` format) per selected row and training seed.

    With several `seeds`, each trained row runs once per seed (run dirs ROW-sSEED), so the
    report can include training-seed noise (the paper: ~1.1 points) and not only rollout noise."""
    root = (base_dir / matrix["runs_root"]).resolve()
    names = list(matrix["rows"])
    if only:
        bad = [r for r in only if r not in names]
        if bad:
            raise ConfigError(f"--rows names {bad}, not rows of the matrix ({', '.join(names)})")
        names = [n for n in names if n in only]
    seeds = matrix.get("seeds") or [None]
    rows = []
    for name in names:
        conf = matrix["rows"][name] or {}
        policy = None if conf.get("evaluate_only") else conf["policy"]
        for seed in (seeds if policy is not None else [None]):
            run_name = f"{name}-s{seed}" if seed is not None and len(seeds) > 1 else name
            values = {"row": run_name, "policy": policy or "none", "seed": "" if seed is None else str(seed),
                      **{k: str(matrix.get(k, "")) for k in ROW_KEYS if k not in ("row", "policy", "seed")}}
            spec = copy.deepcopy(matrix["pipeline"])
            if policy is None:  # the base model: evaluate it as it is
                spec["stages"] = {"evaluate": spec["stages"]["evaluate"]}
                spec["stages"]["evaluate"]["args"] = [a.replace("{hf}", "{base_model}")
                                                      for a in spec["stages"]["evaluate"]["args"]]
            spec = _fill(spec, values)
            spec["name"] = f"{matrix.get('name', 'matrix')}-{run_name}"
            rows.append(Row(run_name, name, policy, seed, root / run_name, root / "specs" / f"{run_name}.yaml",
                            spec))
    return rows


def write_specs(matrix: dict, rows: list[Row], base_dir: Path) -> None:
    """Each row's pipeline spec and train config, written atomically (a crash leaves none half-written)."""
    for row in rows:
        with atomic_open(row.spec_path, "w", encoding="utf-8") as handle:
            handle.write(yaml.safe_dump(row.spec, sort_keys=False))
        if row.policy is not None and matrix.get("train_config"):
            src = (base_dir / matrix["train_config"]).resolve()
            if not src.is_file():
                raise ConfigError(f"train_config {src} not found")
            with atomic_path(row.run_dir / "configs" / "train.yaml") as tmp:
                shutil.copyfile(src, tmp)


def validate(rows: list[Row]) -> None:
    """Check every spec with the launch pipeline's own parser (keys, stages, placeholders).
    `{repo}` is filled with the checkout (where `srft launch` runs), else the working directory:
    only the check needs a value, the launch fills its own."""
    repo = settings.checkout_root() or Path.cwd()
    for row in rows:
        build_pipeline(row.spec, RunDir.at(row.run_dir), repo, source=str(row.spec_path))


def launch(rows: list[Row], *, dry_run: bool, executor: str | None) -> int:
    srft = [*SRFT, "launch"]
    failed = []
    for row in rows:
        cmd = srft + [str(row.spec_path), "--run-dir", str(row.run_dir)]
        if executor:
            cmd += ["--executor", executor]
        kind = executor or row.spec.get("executor", {}).get("kind", "slurm")
        if dry_run:
            cmd.append("--dry-run")
        elif kind == "slurm":
            cmd.append("--detach")  # rows run in parallel; each row is its own afterok chain
        print(f"[{row.name}] {shlex.join(cmd)}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            failed.append(row.name)
    if failed:
        print(f"rows that failed to launch or run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def report_command(matrix: dict, rows: list[Row], out: Path) -> list[str]:
    """`srft report-eval` with one model per matrix row; a row's seeds are pooled (their
    rollouts together), so the bootstrap's rollout resampling also spans training seeds."""
    cmd = [*SRFT, "report-eval"]
    groups: dict[str, list[str]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(str(row.run_dir / "eval"))
    for group, evals in groups.items():
        cmd += ["--run", f"{group}={','.join(evals)}"]
    names = set(groups)
    for a, b in matrix.get("compare", []) or []:
        if a in names and b in names:
            cmd += ["--compare", a, b]
    return cmd + ["--out", str(out)]
