"""A pipeline spec: which stages run, with what arguments and resources, on which executor.

Why a small YAML file instead of flags: a 32B run has a dozen knobs per stage (nodes, GPUs,
time limit, container, arguments). Written once in a YAML file (the shipped ones are package data,
`srft_megatron/pipelines/*.yaml`, linked from `launch/pipelines/`) and kept in the run directory,
the spec says exactly what was launched. Stage arguments may use placeholders
`{run}`, `{repo}` and `{logs}`, `{data}`, `{labels}`, `{datasets}`, `{train}`, `{hf}`, `{eval}`,
`{configs}` (the run-dir layout, `rundir.py`), so one spec serves many runs.

    executor: {kind: slurm, partition: batch, account: myacct, time: "04:00:00",
               container_image: null, env: {HF_HOME: /shared/hf}}
    stages:
      preprocess: {args: [--trajectories, "{data}/trajectories.jsonl", ...]}
      train: {nodes: 4, gpus_per_node: 8, nproc_per_node: 8, args: [--config, ..., --run-dir, "{train}"]}
      convert: {args: [to-hf, --checkpoint, "@latest:{train}/checkpoints", --output, "{hf}"]}

`@latest:DIR` is resolved when the job starts (`entry.py`): the newest checkpoint in DIR.
Stages always run in pipeline order (`STAGE_ORDER`); each waits for the previous selected one
(`afterok`), so a failed stage stops everything after it.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from srft_megatron.errors import ConfigError
from srft_megatron.launch.rundir import RunDir

STAGE_ORDER = ("ingest", "label", "preprocess", "train", "convert", "evaluate")
# How each stage's processes are started: one python per srun task, torchrun per node, or the
# critic script (vLLM replicas, one srun task per node, + `srft label`).
STAGE_KIND = {"ingest": "python", "label": "critic", "preprocess": "python", "train": "torchrun",
              "convert": "python", "evaluate": "python"}

DEFAULT_ARGS: dict[str, list[str]] = {
    "label": ["--trajectories", "{data}/trajectories.jsonl", "--output", "{labels}/labels.jsonl"],
    "preprocess": ["--trajectories", "{data}/trajectories.jsonl", "--labels", "{labels}/labels.jsonl",
                   "--policy", "srft", "--tokenizer", "qwen2.5", "--seq-length", "32768",
                   "--output-prefix", "{datasets}/srft"],
    "train": ["--config", "{configs}/train.yaml", "--run-dir", "{train}"],
    "convert": ["to-hf", "--checkpoint", "@latest:{train}/checkpoints", "--output", "{hf}", "--overwrite"],
    "evaluate": ["--model", "{hf}", "--output", "{eval}"],
}

# no default for ingest: its inputs are files only the spec can name (`srft ingest` takes files,
# not a directory), so a spec with an ingest stage must give its `args`
_STAGE_KEYS = {"args", "extra_args", "nodes", "nproc_per_node", "gpus_per_node", "cpus_per_task",
               "time", "env", "rdzv_port", "python"}
_EXECUTOR_KEYS = {"kind", "partition", "account", "time", "container_image", "container_mounts",
                  "env", "gpus_per_node", "cpus_per_task", "mem", "qos", "exclusive", "gpu_memory_gb"}


@dataclass
class StageSpec:
    name: str
    args: list[str]
    nodes: int = 1
    nproc_per_node: int = 1         # torchrun workers per node (train), vLLM replicas per node (label)
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    time: str | None = None         # default: the executor's
    env: dict[str, str] = field(default_factory=dict)
    rdzv_port: int = 29500
    python: str | None = None       # default: the repo's .venv python

    @property
    def kind(self) -> str:
        return STAGE_KIND[self.name]


@dataclass
class ExecutorSpec:
    kind: str = "slurm"             # slurm | local
    partition: str | None = None
    account: str = "default"
    time: str = "04:00:00"
    container_image: str | None = None
    container_mounts: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    qos: str | None = None
    exclusive: bool | None = None
    gpu_memory_gb: float = 80.0     # memory of one GPU, GiB: the fit check of the train stage (launch/fit.py)


@dataclass
class PipelineSpec:
    executor: ExecutorSpec
    stages: list[StageSpec]         # in pipeline order
    source: str = "<dict>"

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


def _check_keys(where: str, got: dict, allowed: set[str]) -> None:
    unknown = sorted(set(got) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _fill(value: str, values: dict[str, str], where: str) -> str:
    try:
        return value.format(**values)
    except (KeyError, IndexError) as exc:
        raise ConfigError(f"{where}: unknown placeholder {exc} in {value!r} "
                          f"(known: {', '.join('{' + k + '}' for k in values)})") from None


def _env_map(where: str, env: Any, values: dict[str, str]) -> dict[str, str]:
    """An `env` mapping with placeholders filled; names must be variable names (they are written
    into sbatch scripts as `export NAME=...`; the values are quoted there, the names cannot be)."""
    if not isinstance(env, dict):
        raise ConfigError(f"{where}: env must map variable names to values")
    for key in env:
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ConfigError(f"{where}: env: {key!r} is not an environment variable name")
    return {k: _fill(str(v), values, where) for k, v in env.items()}


def build_pipeline(raw: dict[str, Any], run: RunDir, repo: Path, *, only: list[str] | None = None,
                   executor_kind: str | None = None, source: str = "<dict>") -> PipelineSpec:
    """Validate a parsed spec, fill defaults and placeholders, keep the selected stages."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a pipeline spec is a mapping with 'executor' and 'stages'")
    _check_keys(source, raw, {"executor", "stages", "name"})
    ex_raw = dict(raw.get("executor") or {})
    _check_keys(f"{source}: executor", ex_raw, _EXECUTOR_KEYS)
    executor = ExecutorSpec(**ex_raw)
    if executor_kind:
        executor.kind = executor_kind
    if executor.kind not in ("slurm", "local"):
        raise ConfigError(f"{source}: executor.kind must be 'slurm' or 'local', not {executor.kind!r}")
    stages_raw = raw.get("stages") or {}
    if not isinstance(stages_raw, dict) or not stages_raw:
        raise ConfigError(f"{source}: 'stages' must map stage names to settings")
    for name in stages_raw:
        if name not in STAGE_ORDER:
            raise ConfigError(f"{source}: unknown stage {name!r} (stages: {', '.join(STAGE_ORDER)})")
    selected = [s for s in STAGE_ORDER if s in stages_raw]
    if only:
        missing = [s for s in only if s not in stages_raw]
        if missing:
            raise ConfigError(f"{source}: --stages names {', '.join(missing)} which the spec does not define")
        selected = [s for s in selected if s in only]
    values = run.placeholders(repo)
    stages = []
    for name in selected:
        conf = dict(stages_raw[name] or {})
        where = f"{source}: stages.{name}"
        _check_keys(where, conf, _STAGE_KEYS)
        args = conf.pop("args", None)
        if args is None and name not in DEFAULT_ARGS:
            raise ConfigError(f"{where}: give 'args' (the trajectory files and -o {{data}}/trajectories.jsonl; "
                              f"srft ingest takes files, not a directory)")
        args = list(DEFAULT_ARGS[name] if args is None else args) + list(conf.pop("extra_args", []) or [])
        env = _env_map(where, conf.pop("env", {}) or {}, values)
        stage = StageSpec(name=name, args=[_fill(str(a), values, where) for a in args], env=env, **conf)
        if stage.nodes < 1 or stage.nproc_per_node < 1:
            raise ConfigError(f"{where}: nodes and nproc_per_node must be >= 1")
        if executor.kind == "local" and stage.nodes != 1:
            raise ConfigError(f"{where}: the local executor runs on one node (nodes: {stage.nodes})")
        stages.append(stage)
    executor.env = _env_map(f"{source}: executor", executor.env or {}, values)
    return PipelineSpec(executor=executor, stages=stages, source=source)


def load_pipeline(path: str | Path, run: RunDir, repo: Path, **kwargs) -> PipelineSpec:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return build_pipeline(raw, run, repo, source=str(path), **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `srft launch` and of the nemo-run driver (launch/driver.py): one list."""
    parser.add_argument("pipeline", help="pipeline spec: a YAML file, or the name of a shipped one "
                                         "(srft_megatron/pipelines/: tiny-cpu, qwen2.5-32b, ...)")
    parser.add_argument("--run-dir", required=True, help="run directory (created; layout in README)")
    parser.add_argument("--stages", default=None,
                        help=f"comma-separated subset of the spec's stages (order: {','.join(STAGE_ORDER)})")
    parser.add_argument("--executor", choices=["slurm", "local"], default=None,
                        help="override the spec's executor.kind")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the sbatch command and script of every stage; submit nothing")
    parser.add_argument("--detach", action="store_true",
                        help="submit and return (SLURM only) instead of waiting for the pipeline")
    parser.add_argument("--gpu-memory-gb", type=float, default=None,
                        help="memory of one GPU of the train stage, GiB, for the fit check (default: the spec's "
                             "executor.gpu_memory_gb, else 80)")
    parser.add_argument("--no-fit-check", action="store_true",
                        help="submit without checking that the train stage's layout fits its GPUs (srft plan's "
                             "memory model, launch/fit.py)")


def load_from_args(args: argparse.Namespace, run: RunDir, repo: Path) -> PipelineSpec:
    """The spec the options of `add_arguments` name (`pipeline`, `--stages`, `--executor`): read
    alike by `srft launch`'s fit check and by the nemo-run driver."""
    only = [s.strip() for s in args.stages.split(",") if s.strip()] if args.stages else None
    return load_pipeline(resolve_pipeline(args.pipeline), run, repo, only=only, executor_kind=args.executor)

def shipped_pipelines() -> list[str]:
    """Names of the pipeline specs shipped with the package (`srft_megatron/pipelines/NAME.yaml`)."""
    return sorted(p.name[:-len(".yaml")] for p in resources.files("srft_megatron.pipelines").iterdir()
                  if p.name.endswith(".yaml"))


def resolve_pipeline(name_or_path: str) -> Path:
    """A spec file as given, else a shipped spec by name (`srft launch tiny-cpu`): package data,
    so an installed wheel finds it as a checkout does (./launch/pipelines links to it)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    # by name: a bare name in the shipped list (names hold dots, "qwen2.5-32b": no suffix test)
    if path.name == str(name_or_path) and path.name in shipped_pipelines():
        return Path(str(resources.files("srft_megatron.pipelines").joinpath(f"{path.name}.yaml")))
    raise ConfigError(f"pipeline {name_or_path!r} is neither a file nor a shipped spec "
                      f"(known: {', '.join(shipped_pipelines())})")
