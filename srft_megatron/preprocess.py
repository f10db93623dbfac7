"""Trajectories + labels + policy → Megatron indexed datasets with a loss-weight channel.

    srft preprocess --trajectories trajectories.jsonl --labels labels.jsonl --policy srft \\
        --tokenizer qwen2.5 --seq-length 32768 --output-prefix data/srft --workers 8

Per trajectory (in a worker process): the policy gives one weight per step, the renderer gives
the token ids and each step's span, and the step weights are painted onto the spans (every
other token weighs 0). A trajectory longer than `seq_length + 1` tokens (one training sample
holds seq_length + 1 tokens: inputs and shifted labels) is cut after the last step that fits,
or dropped, as chosen. Trajectories whose weights are all zero (e.g. unresolved ones under
`rft`) are skipped and counted. Every skip and reject is counted by reason in the metadata.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from srft_megatron.dataset import DatasetWriter
from srft_megatron.errors import InputError
from srft_megatron.io import RejectLog
from srft_megatron.policy import WeightPolicy
from srft_megatron.render import StepRenderer
from srft_megatron.tokenizer import load_tokenizer, tokenizer_identity
from srft_megatron.trajectory import LABELS, LabelRecord, Trajectory, read_labels, read_trajectories


@dataclass
class PreprocessJob:
    trajectories: str
    output_prefix: str
    seq_length: int
    policy: WeightPolicy
    tokenizer: str = "qwen2.5"
    labels: str | None = None
    render: str = "tools"
    overlong: str = "cut"          # "cut" at a step boundary, or "drop"
    workers: int = 1
    strict: bool = False
    rejects: str | None = None
    progress: bool = True


@dataclass
class DocResult:
    """What a worker returns for one trajectory."""

    id: str
    resolved: bool | None
    token_ids: np.ndarray | None = None
    weights: np.ndarray | None = None
    step_labels: list[str | None] = field(default_factory=list)
    step_weights: list[float] = field(default_factory=list)
    step_tokens: list[int] = field(default_factory=list)
    steps_cut: int = 0
    skip: str | None = None
    error: InputError | None = None
    seconds: float = 0.0
    rendered_tokens: int = 0
    line: int | None = None


_STATE: dict[str, Any] = {}


def _init_worker(tokenizer_name: str, render: str, policy: WeightPolicy, seq_length: int, overlong: str) -> None:
    _STATE.update(renderer=StepRenderer(load_tokenizer(tokenizer_name), render), policy=policy,
                  seq_length=seq_length, overlong=overlong)


def _process(item: tuple[dict, dict | None]) -> DocResult:
    start = time.perf_counter()
    traj_json, label_json = item
    traj = Trajectory.from_json(traj_json)
    result = DocResult(traj.id, traj.resolved, line=traj_json.get("_line"))
    try:
        labels = LabelRecord.from_json(label_json, num_steps=traj.num_steps) if label_json else None
        policy: WeightPolicy = _STATE["policy"]
        weights = policy.step_weights(traj, labels)
        result.step_labels = [s.label for s in labels.steps] if labels else [None] * traj.num_steps
        if not any(weights):
            result.skip = f"no trained tokens under policy {policy.name}"
            result.step_weights = weights
            return result
        rendered = _STATE["renderer"].render(traj)
        result.rendered_tokens = len(rendered.input_ids)
        token_weights = rendered.step_weights(weights)
        ids, spans = rendered.input_ids, rendered.steps
        limit = _STATE["seq_length"] + 1
        if len(ids) > limit:
            fitting = [s for s in spans if s.end <= limit]
            if _STATE["overlong"] == "drop":
                result.skip = "longer than seq-length (dropped)"
            elif not fitting:
                result.skip = "first step ends beyond seq-length"
            else:
                cut = fitting[-1].end
                result.steps_cut = len(spans) - len(fitting)
                ids, token_weights, spans = ids[:cut], token_weights[:cut], fitting
                weights = weights[: len(fitting)]
                result.step_labels = result.step_labels[: len(fitting)]
        if result.skip is None and not token_weights.any():
            result.skip = "no trained tokens left after cutting to seq-length"
        result.step_weights = weights
        result.step_tokens = [s.end - s.start for s in spans]
        if result.skip is None:
            result.token_ids, result.weights = ids, token_weights
    except InputError as err:
        result.error = err.located(traj_id=traj.id)
    finally:
        result.seconds = time.perf_counter() - start
    return result


class _Stats:
    """Counts for the metadata: the paper's Table 1 for our data, and every skip by reason."""

    def __init__(self):
        self.steps = {status: {label: 0 for label in (*LABELS, "unlabelled")}
                      for status in ("resolved", "unresolved", "unknown")}
        self.kept_steps = {"resolved": 0, "unresolved": 0, "unknown": 0}
        self.rejected_steps = {"resolved": 0, "unresolved": 0, "unknown": 0}
        self.skipped: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.truncated = 0
        self.steps_cut = 0
        self.step_tokens = 0
        self.documents: list[dict] = []
        self.worker_seconds = 0.0
        self.rendered_tokens = 0

    def add(self, res: DocResult) -> None:
        status = {True: "resolved", False: "unresolved", None: "unknown"}[res.resolved]
        self.worker_seconds += res.seconds
        self.rendered_tokens += res.rendered_tokens
        if res.skip:
            self.skipped[res.skip] = self.skipped.get(res.skip, 0) + 1
            return
        for label, weight in zip(res.step_labels, res.step_weights):
            self.steps[status][label or "unlabelled"] += 1
            if weight > 0:
                self.kept_steps[status] += 1
            else:
                self.rejected_steps[status] += 1
        self.step_tokens += sum(res.step_tokens)
        if res.steps_cut:
            self.truncated += 1
            self.steps_cut += res.steps_cut
        self.documents.append({"id": res.id, "resolved": res.resolved, "tokens": int(res.token_ids.size),
                               "weighted_tokens": round(float(res.weights.sum(dtype=np.float64)), 6),
                               "steps": len(res.step_weights), "kept_steps": sum(w > 0 for w in res.step_weights),
                               "steps_cut": res.steps_cut})


def _inputs(job: PreprocessJob, rejects: RejectLog, stats: _Stats) -> Iterator[tuple[dict, dict | None]]:
    labels: dict[str, LabelRecord] = {}
    bad_label_ids: set[str] = set()
    if job.labels:
        labels, errors = read_labels(job.labels)
        for err in errors:
            _reject(job, rejects, stats, err)
            if err.traj_id:
                bad_label_ids.add(err.traj_id)
    for line, traj in read_trajectories(job.trajectories):
        if isinstance(traj, InputError):
            _reject(job, rejects, stats, traj)
            continue
        if traj.id in bad_label_ids:
            continue  # already rejected once, with its label record's reason and id
        rec = labels.get(traj.id)
        if rec is not None and len(rec.steps) != traj.num_steps:
            _reject(job, rejects, stats, InputError(
                f"label list has {len(rec.steps)} entries for {traj.num_steps} steps",
                file=job.labels, line=getattr(rec, "extra_line", None), traj_id=traj.id))
            continue
        traj_json = traj.to_json()
        traj_json["_line"] = line
        yield traj_json, (rec.to_json() if rec else None)


def _reject(job: PreprocessJob, rejects: RejectLog, stats: _Stats, err: InputError, record: Any = None) -> None:
    if job.strict:
        raise err
    print(f"rejected: {err}", file=sys.stderr)
    rejects.add(err, record)
    stats.rejected[err.reason] = stats.rejected.get(err.reason, 0) + 1


def run_preprocess(job: PreprocessJob) -> dict[str, Any]:
    """Run the whole stage; returns the metadata written beside the dataset."""
    if job.seq_length < 2:
        raise ValueError("seq-length must be at least 2")
    tokenizer = load_tokenizer(job.tokenizer)
    rejects = RejectLog(job.rejects or f"{job.output_prefix}.rejects.jsonl")
    stats = _Stats()
    init_args = (job.tokenizer, job.render, job.policy, job.seq_length, job.overlong)
    wall = time.perf_counter()
    with DatasetWriter(job.output_prefix) as writer:
        if job.workers > 1:
            pool = mp.get_context("spawn").Pool(job.workers, initializer=_init_worker, initargs=init_args)
            results = pool.imap(_process, _inputs(job, rejects, stats), chunksize=4)
        else:
            pool = None
            _init_worker(*init_args)
            results = map(_process, _inputs(job, rejects, stats))
        try:
            for res in tqdm(results, desc="preprocess", unit="traj", disable=not job.progress):
                if res.error is not None:
                    _reject(job, rejects, stats, res.error.located(file=job.trajectories, line=res.line))
                    continue
                stats.add(res)
                if res.token_ids is not None:
                    writer.add(res.token_ids, res.weights)
        finally:
            if pool is not None:
                pool.terminate()
        meta = {
            "tokenizer": tokenizer_identity(tokenizer),
            "render": job.render,
            "policy": job.policy.to_json(),
            "seq_length": job.seq_length,
            "overlong": job.overlong,
            "sources": {"trajectories": job.trajectories, "labels": job.labels},
            "counts": {
                "trajectories_in": len(stats.documents) + sum(stats.skipped.values()) + sum(stats.rejected.values()),
                "skipped": stats.skipped, "rejected": stats.rejected,
                "truncated": stats.truncated, "steps_cut": stats.steps_cut,
                "steps_by_label": stats.steps, "kept_steps": stats.kept_steps,
                "rejected_steps": stats.rejected_steps, "step_tokens": stats.step_tokens,
            },
            "documents": stats.documents,
            "timing": {"wall_seconds": round(time.perf_counter() - wall, 3),
                       "worker_seconds": round(stats.worker_seconds, 3),
                       "rendered_tokens": stats.rendered_tokens, "workers": job.workers},
        }
        meta = writer.commit(meta)
    rejects.write()
    return meta
