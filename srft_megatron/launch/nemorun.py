"""nemo-run recipes: each pipeline stage as a `run.Script` + executor, chained with `afterok`.

Why nemo-run: it writes and submits the sbatch scripts (srun + torchrun with c10d rendezvous on
the head node, pyxis flags when a container image is given), tracks the jobs and runs the same
recipe on one machine with `LocalExecutor`. It lives in `.venv-launch` (it would downgrade pinned
packages of the main venv), so only this module imports it and `srft launch` calls
the driver (`python -m srft_megatron.launch.driver`) in that venv. The jobs themselves run the main venv's `srft`.

Facts this relies on (../shared/notes/slurm-local-cluster.md, nemo-run 0.11.1):
- no packaging: `run.Packager()` copies nothing; commands use absolute paths and the installed
  package, so the code that runs is the checkout's;
- `LocalTunnel(job_dir=<base>/experiments)` with the experiment's base dir; nemo-run rewrites any
  "/nemo_run" in generated scripts, so the base dir is RUN/nemorun, never ".../nemo_run";
- a failed job does not raise: states are read back and reported (`jobs.py`);
- nemo-run 0.11.1 writes most of the sbatch script without quoting: `export KEY=VALUE`, the srun
  `--output`/`--chdir` paths and the arguments of non-torchrun stages go in as they are (its
  `noquote` is a plain `str` alias, so its own `shlex.quote` never applies), and `LocalTunnel`
  runs `mkdir -p {job_dir}` through a shell, even on `--dry-run`. So this module quotes every
  stage argument and env value itself (`shell_words`, `_env`), refuses a repository path that is
  not shell-safe, and hands nemo-run only shell-safe paths of its own: when the run dir's path is
  not safe (a space, `$(...)`), nemo-run's experiment dir and the SLURM logs go through a safe
  symlink to it (`nemo_root`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
from pathlib import Path

import nemo_run as run
from nemo_run.core.execution.slurm import SlurmJobDetails

from srft_megatron.errors import ConfigError
from srft_megatron.launch.jobs import StageResult, error_lines, slurm_stage_result, tail
from srft_megatron.launch.pipeline import ExecutorSpec, PipelineSpec, StageSpec
from srft_megatron.launch.rundir import RunDir

JOB_PREFIX = "srft-"
# what nemo-run may put into a shell line as it is: no quoting needed
_SHELL_SAFE = re.compile(r"[A-Za-z0-9_./@%+=:,-]+")
LINKS_DIR = Path(os.environ.get("SRFT_LAUNCH_LINKS", Path.home() / ".cache" / "srft" / "run-links"))


def shell_safe(path: str | Path, what: str) -> str:
    """`path` when nemo-run can put it into a shell line unquoted; else a one-line ConfigError."""
    text = str(path)
    if not _SHELL_SAFE.fullmatch(text):
        raise ConfigError(f"{what} {text!r}: nemo-run puts this path into sbatch scripts unquoted; "
                          f"use only letters, digits and _ . / @ % + = : , -")
    return text


def nemo_root(run_dir: RunDir, links: Path | None = None) -> Path:
    """The run dir as nemo-run may see it: itself when shell-safe, else a symlink to it under
    LINKS_DIR (`$SRFT_LAUNCH_LINKS`; on a cluster it must be on a filesystem every node sees, as
    the home directory usually is). Only nemo-run's own paths (experiment dir, SLURM logs) use it;
    stage arguments and SRFT_RUN_DIR carry the real path, quoted."""
    if _SHELL_SAFE.fullmatch(str(run_dir.root)):
        return run_dir.root
    links = Path(links or LINKS_DIR)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_dir.root.name).strip("_.") or "run"
    link = links / f"srft-{name}-{hashlib.sha256(str(run_dir.root).encode()).hexdigest()[:12]}"
    shell_safe(link, "run-dir link (set SRFT_LAUNCH_LINKS to a safe directory)")
    links.mkdir(parents=True, exist_ok=True)
    if not (link.is_symlink() and Path(os.readlink(link)) == run_dir.root):
        tmp = link.with_name(f".{link.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(run_dir.root, target_is_directory=True)
        os.replace(tmp, link)   # atomic: a concurrent launch sees the old link or the new one
    return link


def shell_words(words: list[str]) -> list[str]:
    """Arguments for a stage whose command line nemo-run writes unquoted: each one shell-quoted,
    so the job receives exactly these strings (spaces, `;`, `$(...)` included)."""
    return [shlex.quote(str(w)) for w in words]


def stage_script(stage: StageSpec, repo: Path, python: str, quote: bool = True) -> run.Script:
    """The command of one stage. torchrun stages get their torchrun line from the executor's
    launcher, which shell-quotes the arguments itself; every other stage's line is written
    unquoted by nemo-run, so its words are quoted here (`quote`; False for the local executor,
    which starts the command without a shell). The critic stage runs slurm/critic_task.sh once
    per node."""
    words = shell_words if quote and stage.kind != "torchrun" else list
    args = list(stage.args)
    entry = stage.env.get("SRFT_ENTRY")
    target = [entry] if entry else ["-m", "srft_megatron.cli"]
    if stage.kind == "torchrun" and not quote:
        # One machine: torchrun as the command itself. nemo-run's torchrun launcher shell-quotes
        # every argument (right for sbatch), but the local executor starts it without a shell, so
        # the trainer would get `'data.prefixes=[...]'` with the quotes.
        return run.Script(path="torch.distributed.run", m=True, entrypoint=python,
                          args=["--standalone", "--nproc-per-node", str(stage.nproc_per_node), *target,
                                stage.name, *args])
    if stage.kind == "critic":
        return run.Script(path=str(repo / "slurm" / "critic_task.sh"), entrypoint="bash", args=words(args))
    if stage.kind == "torchrun":
        python = "python"  # torchrun runs the script with its own interpreter (the venv's, via PATH)
    elif quote:
        python = shlex.quote(python)
    if entry:  # a script file instead of the srft module (e.g. a fork's trainer)
        return run.Script(path=words([entry])[0], entrypoint=python, args=words([stage.name, *args]))
    # python stages go through launch.entry, which resolves run-time references (@latest:DIR)
    module = "srft_megatron.cli" if stage.kind == "torchrun" else "srft_megatron.launch.entry"
    return run.Script(path=module, m=True, entrypoint=python, args=words([stage.name, *args]))


def _env(stage: StageSpec, ex: ExecutorSpec, run_dir: RunDir, repo: Path) -> dict[str, str]:
    """The stage's environment. For SLURM every value is shell-quoted: nemo-run writes
    `export KEY=VALUE` as it is (PATH keeps `$PATH` outside the quotes, to be expanded)."""
    quote = shlex.quote if ex.kind == "slurm" else str
    env = {"SRFT_REPO": quote(str(repo)), "SRFT_RUN_DIR": quote(str(run_dir.root)), "PYTHONUNBUFFERED": "1"}
    if ex.container_image is None:
        # torchrun, srft and python of the main venv
        env["PATH"] = f"{quote(f'{repo}/.venv/bin')}:$PATH" if ex.kind == "slurm" else f"{repo}/.venv/bin:$PATH"
    user = dict(ex.env) | {k: v for k, v in stage.env.items() if k != "SRFT_ENTRY"}  # names: pipeline.py
    env.update({k: quote(str(v)) for k, v in user.items()})
    if stage.kind == "critic":
        env["SRFT_VLLM_REPLICAS_PER_NODE"] = str(stage.nproc_per_node)
    return env


def stage_executor(stage: StageSpec, ex: ExecutorSpec, run_dir: RunDir, repo: Path):
    env = _env(stage, ex, run_dir, repo)
    if ex.kind == "local":   # one process per stage; a torchrun stage is torchrun itself (stage_script)
        return run.LocalExecutor(ntasks_per_node=1, env_vars=env)
    launcher = run.Torchrun(rdzv_port=stage.rdzv_port) if stage.kind == "torchrun" else None
    # critic: one task per node (it starts that node's vLLM replicas); torchrun: nemo-run turns
    # ntasks_per_node into --nproc-per-node and keeps one srun task per node.
    ntasks = 1 if stage.kind == "critic" else stage.nproc_per_node
    extra = {"kill_on_invalid_dep": "yes"}  # dependants of a failed stage are cancelled, not stuck
    if stage.kind == "torchrun":
        extra["requeue"] = True              # pre-empted training goes back to the queue and resumes
    return run.SlurmExecutor(
        account=ex.account, partition=ex.partition, nodes=stage.nodes, ntasks_per_node=ntasks,
        gpus_per_node=stage.gpus_per_node or ex.gpus_per_node,
        cpus_per_task=stage.cpus_per_task or ex.cpus_per_task, time=stage.time or ex.time,
        mem=ex.mem, qos=ex.qos, exclusive=ex.exclusive,
        container_image=ex.container_image, container_mounts=list(ex.container_mounts),
        env_vars=env, launcher=launcher, packager=run.Packager(), job_name_prefix=JOB_PREFIX,
        job_details=SlurmJobDetails(folder=str(nemo_root(run_dir) / "logs")),
        tunnel=run.LocalTunnel(job_dir=str(nemo_root(run_dir) / "nemorun" / "experiments")),
        additional_parameters=extra, poll_estimated_start_time=False,
    )


def build_experiment(spec: PipelineSpec, run_dir: RunDir, repo: Path, title: str = "srft"):
    """An Experiment with one task per stage, each depending on the previous one."""
    shell_safe(repo, "repository path")
    exp = run.Experiment(title, base_dir=str(nemo_root(run_dir) / "nemorun"), log_level="WARN")
    exp.__enter__()
    previous = None
    for stage in spec.stages:
        python = stage.python or (str(repo / ".venv" / "bin" / "python") if spec.executor.container_image is None
                                  else "python")
        executor = stage_executor(stage, spec.executor, run_dir, repo)
        deps = [previous] if previous is not None else None
        script = stage_script(stage, repo, python, quote=spec.executor.kind == "slurm")
        previous = exp.add(script, executor=executor, name=stage.name, dependencies=deps)
    return exp


def dry_run(spec: PipelineSpec, run_dir: RunDir, repo: Path) -> str:
    """The sbatch command and script of every stage, as nemo-run would submit them."""
    exp = build_experiment(spec, run_dir, repo)
    try:
        exp.dryrun(log=False, delete_exp_dir=False)
        parts = []
        for index, job in enumerate(exp.jobs):
            info = job._dryrun_info
            request = getattr(info, "request", None)
            dep = f" (after {spec.stages[index - 1].name} succeeds: --dependency=afterok)" if index else ""
            parts.append(f"##### stage {job.id}{dep}")
            if hasattr(request, "materialize"):
                parts.append("$ " + " ".join(request.launch_cmd) + " <script>")
                parts.append(request.materialize())
            else:
                parts.append(str(info))
        return "\n".join(parts)
    finally:
        shutil.rmtree(exp._exp_dir, ignore_errors=True)
        exp.__exit__(None, None, None)


def _slurm_id(handle: str | None) -> str | None:
    # torchx app handle "slurm_tunnel://nemo_run/<jobid>"
    return handle.rstrip("/").rsplit("/", 1)[-1] if handle else None


def run_pipeline(spec: PipelineSpec, run_dir: RunDir, repo: Path, detach: bool = False) -> list[StageResult]:
    if spec.executor.kind == "local":
        return _run_local(spec, run_dir, repo)
    exp = build_experiment(spec, run_dir, repo)
    try:
        # Every stage is submitted at once with afterok dependencies (and kill-on-invalid-dep, so
        # the dependants of a failed stage are cancelled). Leaving the experiment's context waits
        # for the jobs to end unless detached.
        exp.run(detach=detach)
    finally:
        exp.__exit__(None, None, None)
    results = []
    for job in exp.jobs:
        job_id = _slurm_id(job.handle)
        if detach:
            results.append(StageResult(stage=job.id, job_id=job_id, state="SUBMITTED"))
        else:
            results.append(slurm_stage_result(job.id, job_id, run_dir.logs, f"{JOB_PREFIX}{job.id}"))
    return results


def _run_local(spec: PipelineSpec, run_dir: RunDir, repo: Path) -> list[StageResult]:
    """One stage at a time on this machine, stopping at the first failure. (nemo-run's own
    sequential mode for LocalExecutor starts the next task even when one failed.)"""
    results: list[StageResult] = []
    for index, stage in enumerate(spec.stages):
        one = PipelineSpec(executor=spec.executor, stages=[stage], source=spec.source)
        exp = build_experiment(one, run_dir, repo, title=f"srft-{stage.name}")
        try:
            exp.run()
        finally:
            exp.__exit__(None, None, None)
        state = getattr(exp.jobs[0].state, "name", str(exp.jobs[0].state))
        logs = sorted(Path(exp._exp_dir).glob(f"{stage.name}/**/combined.log"), key=lambda p: p.stat().st_mtime)
        log = logs[-1] if logs else None
        result = StageResult(stage=stage.name, job_id=None, state=state, log=str(log) if log else None)
        if not result.ok:
            result.log_tail, result.error_lines = tail(log), error_lines(log)
        results.append(result)
        if not result.ok:
            results += [StageResult(stage=later.name, job_id=None, state="NOT_RUN",
                                    reason=f"{stage.name} failed") for later in spec.stages[index + 1:]]
            break
    return results
