"""`srft evaluate` as steps over a run directory: serve → agent → harness, N rollouts, resumable.

Why a run directory with markers: one evaluation of a 7B model is 7 × 500 agent episodes
and 3,500 Docker test runs, hours of work that fails halfway for ordinary reasons (a node
lost, Docker missing on the agent machine). Every step leaves its output in place and is
skipped on a rerun once complete; a partial agent rollout resumes per instance
(mini-swe-agent skips ids already in its preds.json).

    RUN/eval.json                 the settings (a rerun with different settings is refused)
    RUN/vllm.log                  the server's log
    RUN/rollout-01/agent/         mini-swe-agent output: preds.json, one trajectory per instance
    RUN/rollout-01/agent.done     the agent step finished for every selected instance
    RUN/rollout-01/harness/       the harness's logs/run_evaluation/... and its summary report
    RUN/rollout-01/report.json    the harness summary report (input of `srft report-eval`;
                                  written by srft_megatron.evaluate.harness, ROLLOUT_REPORT)
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from srft_megatron.critic.client import redact_url
from srft_megatron.errors import ConfigError, InputError
from srft_megatron.evaluate.agent import AgentConfig, count_predictions, run_agent
from srft_megatron.evaluate.harness import HarnessConfig, run_harness
from srft_megatron.evaluate.serve import ServeConfig, VllmServer
from srft_megatron.io import iter_jsonl, write_json

# Names for both tools: mini-swe-agent maps these itself; the harness needs the HF dataset name.
SUBSETS = {"verified": "princeton-nlp/SWE-bench_Verified", "lite": "princeton-nlp/SWE-bench_Lite",
           "full": "princeton-nlp/SWE-bench"}
# Settings that change what a rollout measures: a rerun must not mix them.
_FIXED = ("model", "served_name", "dataset", "split", "instance_ids", "agent_config", "model_class",
          "environment_class", "temperature", "max_tokens", "seed", "agent_overrides", "profile")


@dataclass
class EvalSettings:
    model: str | None             # HF checkpoint dir to serve (None with an external endpoint)
    served_name: str
    output: str
    rollouts: int = 7
    dataset: str = "verified"     # a SUBSETS key or a local SWE-bench JSONL file
    split: str = "test"
    instance_ids: list[str] = field(default_factory=list)
    endpoint: str | None = None   # an OpenAI-compatible URL already serving `served_name`
    agent_config: str = "swebench.yaml"
    model_class: str = "litellm"
    environment_class: str = "docker"
    temperature: float = 0.0
    max_tokens: int | None = None
    seed: int = 0                 # rollout r (1-based) samples with seed + r
    agent_overrides: list[str] = field(default_factory=list)
    agent_workers: int = 4
    harness: str = "docker"       # docker | modal | skip
    harness_workers: int = 4
    agent_python: str = ".venv-agent/bin/python"
    serve: ServeConfig | None = None
    profile: str | None = None    # agent profile (name or YAML); None: mini-swe-agent's own config


def _check_settings(run: Path, settings: EvalSettings) -> None:
    path = run / "eval.json"
    mine = {k: v for k, v in asdict(settings).items() if k != "serve"}
    if mine["endpoint"]:  # recorded as `https://***@host/v1`: no password in a file
        mine["endpoint"] = redact_url(mine["endpoint"])
    if path.exists():
        old = json.loads(path.read_text())
        changed = [k for k in _FIXED if old.get(k) != mine.get(k)]
        if changed:
            raise ConfigError(f"{run} was made with different settings ({', '.join(changed)}); "
                              "use a new --output or the same settings to resume")
    write_json(path, mine)


def _local_dataset(run: Path, settings: EvalSettings) -> tuple[str, str]:
    """(agent --subset, harness --dataset_name) for the chosen dataset.

    A local JSONL file is copied to RUN/dataset/SPLIT.jsonl: mini-swe-agent loads it as a
    dataset directory (the split from the file name), the harness as a file."""
    if settings.dataset in SUBSETS:
        return settings.dataset, SUBSETS[settings.dataset]
    src = Path(settings.dataset)
    if src.suffix != ".jsonl" or not src.is_file():
        raise InputError(f"--subset must be one of {', '.join(SUBSETS)} or a SWE-bench JSONL file",
                         file=settings.dataset)
    ids = []
    for line, rec in iter_jsonl(src):
        if not isinstance(rec, dict) or not rec.get("instance_id") or "problem_statement" not in rec:
            raise InputError("a SWE-bench instance needs instance_id and problem_statement", file=str(src), line=line)
        ids.append(rec["instance_id"])
    unknown = sorted(set(settings.instance_ids) - set(ids))
    if unknown:
        raise InputError(f"--instances not in the dataset: {', '.join(unknown[:5])}", file=str(src))
    dest = run / "dataset" / f"{settings.split}.jsonl"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return str(dest.parent), str(dest)


def rollout_dir(run: Path, r: int) -> Path:
    return run / f"rollout-{r:02d}"


def evaluate(settings: EvalSettings, progress_factory=None) -> list[Path]:
    """Run every missing step of every rollout; return the rollouts' report paths (scored ones)."""
    run = Path(settings.output).resolve()  # the agent and the harness run in subdirectories
    run.mkdir(parents=True, exist_ok=True)
    _check_settings(run, settings)
    agent_subset, harness_dataset = _local_dataset(run, settings)
    agent_cfg = AgentConfig(python=settings.agent_python, dataset=agent_subset, split=settings.split,
                            config=settings.agent_config, model_class=settings.model_class,
                            environment_class=settings.environment_class, workers=settings.agent_workers,
                            temperature=settings.temperature, max_tokens=settings.max_tokens,
                            instance_ids=list(settings.instance_ids), overrides=list(settings.agent_overrides),
                            profile=settings.profile)
    todo = [r for r in range(1, settings.rollouts + 1) if not (rollout_dir(run, r) / "agent.done").exists()]
    if todo:
        if settings.endpoint:
            server = contextlib.nullcontext(settings.endpoint)
        else:
            if settings.serve is None or not settings.model:
                raise ConfigError("--model (or --endpoint) is required to run the agent")
            server = VllmServer(settings.serve)
        with server as url:
            for r in todo:
                rdir = rollout_dir(run, r)
                bar = progress_factory(f"rollout {r}/{settings.rollouts}: agent") if progress_factory else None
                update = (lambda n, bar=bar: bar.update(n - bar.n)) if bar is not None else None
                try:
                    run_agent(agent_cfg, rdir, url, settings.served_name, settings.seed + r, progress=update,
                              api_key=getattr(server, "api_key", None))  # our server's key; else the env's
                finally:
                    if bar is not None:
                        bar.close()
                write_json(rdir / "agent.done", {"predictions": count_predictions(rdir / "agent")})
    reports = []
    if settings.harness == "skip":
        return reports
    harness_cfg = HarnessConfig(python=settings.agent_python, dataset=harness_dataset, split=settings.split,
                                workers=settings.harness_workers, modal=settings.harness == "modal",
                                instance_ids=list(settings.instance_ids))
    for r in range(1, settings.rollouts + 1):
        rdir = rollout_dir(run, r)
        run_id = f"{run.name}-rollout-{r:02d}"
        reports.append(run_harness(harness_cfg, rdir, rdir / "agent" / "preds.json", run_id))
    return reports
