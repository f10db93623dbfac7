"""Trajectories + labels + policy → Megatron indexed datasets with a loss-weight channel.

    srft preprocess --trajectories trajectories.jsonl --labels labels.jsonl --policy srft \\
        --tokenizer qwen2.5 --seq-length 32768 --output-prefix data/srft --workers 8

Per trajectory (in a worker process): the policy gives one weight per step, the renderer gives
the token ids and each step's span, and the step weights are painted onto the spans (every
other token weighs 0); the step labels are painted onto the same spans as the label channel
(`PREFIX_labels`, `dataset.LABEL_CODES`: context, good, ..., unlabelled), whatever the policy. A trajectory longer than `seq_length + 1` tokens (one training sample
holds seq_length + 1 tokens: inputs and shifted labels) is cut after the last step that fits,
or dropped, as chosen. Trajectories whose weights are all zero (e.g. unresolved ones under
`rft`) are skipped and counted. Every skip and reject is counted by reason in the metadata.

Each trajectory is rendered with the tools its agent was given (its `tools`, or `--tools
FILE|PROFILE` for all), so the context trained on is the one the model sees at inference; the
metadata records the sha256 of every tool set used (`tools.sha256`: hash -> documents) and the
steps kept as generated although they start with a newline (`counts.newline_steps`, render.py).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from srft_megatron.dataset import DatasetWriter
from srft_megatron.errors import InputError
from srft_megatron.io import RejectLog
from srft_megatron.policy import WeightPolicy
from srft_megatron.render import StepRenderer
from srft_megatron.tokenizer import load_tokenizer, tokenizer_identity
from srft_megatron.tools import load_tools, tools_sha256
from srft_megatron.trajectory import (LABELS, LabelRecord, Trajectory, check_label_count, read_labels,
                                      read_trajectories)


@dataclass
class PreprocessJob:
    trajectories: str
    output_prefix: str
    seq_length: int
    policy: WeightPolicy
    tokenizer: str = "qwen2.5"
    labels: str | None = None
    render: str = "tools"
    tools: str | None = None       # --tools FILE|PROFILE: overrides every trajectory's own tools
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
    label_codes: np.ndarray | None = None  # the label channel (dataset.LABEL_CODES), one per token
    step_labels: list[str | None] = field(default_factory=list)
    step_weights: list[float] = field(default_factory=list)
    step_tokens: list[int] = field(default_factory=list)
    steps_cut: int = 0
    skip: str | None = None
    error: InputError | None = None
    seconds: float = 0.0
    rendered_tokens: int = 0
    line: int | None = None
    tools_sha256: str | None = None
    newline_steps: int = 0


@dataclass
class WorkItem:
    """One trajectory sent to a worker: already validated, with its labels (count checked) and line."""

    traj: Trajectory
    labels: LabelRecord | None
    line: int


# Trajectories with at most this many characters per token of the limit are rendered whole
# (cheap at any size that can fit); longer ones are first bounded by `fit_messages`.
FIT_CHARS_PER_TOKEN = 4
# Characters of one message tokenised per token still free: enough for any real text (code runs
# ~3-4 characters a token); a message that needs more falls back to its byte-length bound.
FIT_PROBE_CHARS_PER_TOKEN = 16
# Tokens a message may lose where it meets the template text around it (BPE merges at its edges).
FIT_EDGE_TOKENS = 2


def _text_length(msg: dict) -> int:
    calls = msg.get("tool_calls") or []
    return len(msg.get("content") or "") + sum(len(c["function"]["arguments"]) for c in calls)


def _argument_texts(msg: dict) -> list[str]:
    """The string values of a message's tool-call arguments: printed as they are by the xml render
    and JSON-escaped (never shorter) by the tools render, so their tokens bound both from below."""
    texts = []
    for call in msg.get("tool_calls") or []:
        try:
            args = json.loads(call["function"]["arguments"])
        except json.JSONDecodeError:
            continue  # the renderer rejects it with its step
        texts += [v for v in (args.values() if isinstance(args, dict) else []) if isinstance(v, str)]
    return texts


def _min_tokens(text: str, tokenizer, need: int, max_token_bytes: int) -> int:
    """A lower bound on the tokens `text` takes, computed without tokenising more than about
    `need` tokens' worth of it: exact for short text, else the count of a tokenised head
    (a prefix's pre-tokens are the text's, so its tokens are not more, up to the last one)."""
    head = text[: FIT_PROBE_CHARS_PER_TOKEN * need + 64]
    count = len(tokenizer(head, add_special_tokens=False)["input_ids"])
    if len(head) == len(text):
        return count
    if count >= need + FIT_EDGE_TOKENS:
        return count - 1
    return len(text.encode("utf-8", "surrogatepass")) // max_token_bytes  # every token spans <= max bytes


def max_token_bytes(tokenizer) -> int:
    """The longest token in bytes (byte-level BPE: a token's string holds one character per byte)."""
    return max(len(t) for t in tokenizer.get_vocab())


def fit_messages(traj: Trajectory, tokenizer, limit: int, max_bytes: int) -> Trajectory | None:
    """`traj` itself when it may fit in `limit` tokens, else a copy ending before the first
    message that can no longer fit (None if that is before the first step ends).

    Why: the render tokenises every message and renders every prefix; one 50 MB tool output
    cost 15.7 GB RSS and 213 s to keep 2,048 tokens. Each message's tokens are bounded from
    below on a head of it (`_min_tokens`); once the running bound passes `limit`, no step from
    that message on can end inside the sample, so those messages are dropped unrendered. The
    steps kept render exactly as in the whole trajectory (the template is prefix-stable, which
    the renderer checks). `max_bytes`: `max_token_bytes(tokenizer)`, computed once per worker."""
    if sum(_text_length(m) for m in traj.messages) <= FIT_CHARS_PER_TOKEN * limit:
        return traj
    bound = 0
    for index, msg in enumerate(traj.messages):
        need = limit - bound
        parts = [msg.get("content") or "", *_argument_texts(msg)]
        for text in parts:
            if text:
                bound += max(0, _min_tokens(text, tokenizer, need, max_bytes) - FIT_EDGE_TOKENS)
        if bound > limit:
            kept = dataclasses.replace(traj, messages=traj.messages[:index])
            return kept if any(s.index < index for s in traj.steps()) else None
    return traj


@dataclass
class Worker:
    """What each worker process holds: the renderer (its tokenizer loaded once per process), the
    policy and the length rules. Built by `_init_worker` in each pool process (`Pool` gives a
    worker no other place to keep it than its module), in the main process when `workers == 1`."""

    renderer: StepRenderer
    policy: WeightPolicy
    seq_length: int
    overlong: str
    max_token_bytes: int

    @classmethod
    def create(cls, tokenizer_name: str, render: str, policy: WeightPolicy, seq_length: int, overlong: str,
               tools: list[dict] | None = None) -> "Worker":
        tokenizer = load_tokenizer(tokenizer_name)
        return cls(StepRenderer(tokenizer, render, tools=tools), policy, seq_length, overlong,
                   max_token_bytes(tokenizer))


_WORKER: Worker | None = None  # this process's worker (set by `_init_worker`)


def _init_worker(*args) -> None:
    global _WORKER
    _WORKER = Worker.create(*args)


def _run_item(item: WorkItem) -> DocResult:
    return _process(_WORKER, item)


def _process(worker: Worker, item: WorkItem) -> DocResult:
    """One trajectory → its tokens, weights and label codes (or the reason it is skipped)."""
    start = time.perf_counter()
    traj, labels = item.traj, item.labels
    result = DocResult(traj.id, traj.resolved, line=item.line)
    try:
        policy = worker.policy
        weights = policy.step_weights(traj, labels)
        result.step_labels = [s.label for s in labels.steps] if labels else [None] * traj.num_steps
        if not any(weights):
            result.skip = f"no trained tokens under policy {policy.name}"
            result.step_weights = weights
            return result
        limit = worker.seq_length + 1
        renderer = worker.renderer
        fitted = fit_messages(traj, renderer.tokenizer, limit, worker.max_token_bytes)
        if fitted is not traj:  # later messages cannot fit: never render or tokenise them
            if worker.overlong == "drop":
                result.skip = "longer than seq-length (dropped)"
                return result
            if fitted is None:
                result.skip = "first step ends beyond seq-length"
                return result
            result.steps_cut = traj.num_steps - fitted.num_steps
            traj, weights = fitted, weights[: fitted.num_steps]
            result.step_labels = result.step_labels[: fitted.num_steps]
        rendered = renderer.render(traj)
        result.rendered_tokens = len(rendered.input_ids)
        result.tools_sha256 = tools_sha256(renderer.tools_for(traj))
        token_weights = rendered.step_weights(weights)
        token_labels = rendered.step_label_codes(result.step_labels)
        ids, spans = rendered.input_ids, rendered.steps
        if len(ids) > limit or result.steps_cut:  # a cut document ends with its last step's <|im_end|>
            fitting = [s for s in spans if s.end <= limit]
            if worker.overlong == "drop":
                result.skip = "longer than seq-length (dropped)"
            elif not fitting:
                result.skip = "first step ends beyond seq-length"
            else:
                cut = fitting[-1].end
                result.steps_cut += len(spans) - len(fitting)
                ids, token_weights, token_labels, spans = ids[:cut], token_weights[:cut], token_labels[:cut], fitting
                weights = weights[: len(fitting)]
                result.step_labels = result.step_labels[: len(fitting)]
        if result.skip is None and not token_weights.any():
            result.skip = "no trained tokens left after cutting to seq-length"
        result.step_weights = weights
        result.step_tokens = [s.end - s.start for s in spans]
        result.newline_steps = sum(k <= len(spans) for k in rendered.newline_steps)
        if result.skip is None:
            result.token_ids, result.weights, result.label_codes = ids, token_weights, token_labels
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
        self.newline_steps = 0
        self.tools: dict[str, int] = {}  # tools sha256 ("none": rendered without) -> documents

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
        self.newline_steps += res.newline_steps
        key = res.tools_sha256 or "none"
        self.tools[key] = self.tools.get(key, 0) + 1
        if res.steps_cut:
            self.truncated += 1
            self.steps_cut += res.steps_cut
        self.documents.append({"id": res.id, "resolved": res.resolved, "tokens": int(res.token_ids.size),
                               "weighted_tokens": round(float(res.weights.sum(dtype=np.float64)), 6),
                               "steps": len(res.step_weights), "kept_steps": sum(w > 0 for w in res.step_weights),
                               "steps_cut": res.steps_cut, "tools_sha256": res.tools_sha256})


def _inputs(job: PreprocessJob, rejects: RejectLog, stats: _Stats) -> Iterator[WorkItem]:
    labels: dict[str, LabelRecord] = {}
    bad_label_ids: set[str] = set()
    if job.labels:
        labels, errors = read_labels(job.labels)
        for err in errors:
            _reject(job, rejects, stats, err)
            if err.traj_id:
                bad_label_ids.add(err.traj_id)
    first_line: dict[str, int] = {}
    for line, traj in read_trajectories(job.trajectories):
        if isinstance(traj, InputError):
            _reject(job, rejects, stats, traj)
            continue
        if traj.id in first_line:  # the same rollout twice would be trained twice
            _reject(job, rejects, stats, InputError(
                f"duplicate trajectory id (first at line {first_line[traj.id]})",
                file=job.trajectories, line=line, traj_id=traj.id))
            continue
        first_line[traj.id] = line
        if traj.id in bad_label_ids:
            continue  # already rejected once, with its label record's reason and id
        rec = labels.get(traj.id)
        if rec is not None:
            try:
                check_label_count(len(rec.steps), traj.num_steps, traj.id, file=job.labels, line=rec.line)
            except InputError as err:
                _reject(job, rejects, stats, err)
                continue
        yield WorkItem(traj, rec, line)


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
    if job.output_prefix.endswith(("/", os.sep)) or Path(job.output_prefix).is_dir():
        raise InputError(f"--output-prefix {job.output_prefix!r} names a directory; give DIR/NAME "
                         "(the files are NAME_tokens.bin, NAME_weights.bin, NAME.meta.json, ...)")
    tokenizer = load_tokenizer(job.tokenizer)
    tools = load_tools(job.tools) if job.tools else None
    rejects = RejectLog(job.rejects or f"{job.output_prefix}.rejects.jsonl")
    stats = _Stats()
    init_args = (job.tokenizer, job.render, job.policy, job.seq_length, job.overlong, tools)
    wall = time.perf_counter()
    with DatasetWriter(job.output_prefix, with_labels=True) as writer:
        if job.workers > 1:
            pool = mp.get_context("spawn").Pool(job.workers, initializer=_init_worker, initargs=init_args)
            results = pool.imap(_run_item, _inputs(job, rejects, stats), chunksize=4)
        else:
            pool = None
            results = map(partial(_process, Worker.create(*init_args)), _inputs(job, rejects, stats))
        try:
            for res in tqdm(results, desc="preprocess", unit="traj", disable=not job.progress):
                if res.error is not None:
                    _reject(job, rejects, stats, res.error.located(file=job.trajectories, line=res.line))
                    continue
                stats.add(res)
                if res.token_ids is not None:
                    writer.add(res.token_ids, res.weights, res.label_codes)
        finally:
            if pool is not None:
                pool.terminate()
        meta = {
            "tokenizer": tokenizer_identity(tokenizer),
            "render": job.render,
            "tools": {"override": job.tools, "override_sha256": tools_sha256(tools), "sha256": stats.tools},
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
                "newline_steps": stats.newline_steps,
            },
            "documents": stats.documents,
            "timing": {"wall_seconds": round(time.perf_counter() - wall, 3),
                       "worker_seconds": round(stats.worker_seconds, 3),
                       "rendered_tokens": stats.rendered_tokens, "workers": job.workers},
        }
        if writer.num_documents == 0:  # a dataset of nothing would only fail later, in training
            rejects.write()
            raise InputError(_no_documents_reason(stats, job), file=job.trajectories)
        meta = writer.commit(meta)
    rejects.write()
    return meta


_SKIP_HINTS = {
    "first step ends beyond seq-length": "longer than --seq-length before its first step ends",
    "longer than seq-length (dropped)": "longer than --seq-length (--overlong drop)",
}


def _no_documents_reason(stats: _Stats, job: PreprocessJob) -> str:
    """Why nothing was kept, in one line: the input was empty, or every trajectory was skipped or
    rejected (each reason with its count)."""
    total = sum(stats.skipped.values()) + sum(stats.rejected.values())
    if total == 0:
        return "no documents written: the input holds no trajectories (no dataset written)"
    if len(stats.skipped) == 1 and not stats.rejected:
        (reason, count), = stats.skipped.items()
        return (f"no documents written: every trajectory ({count}) is {_SKIP_HINTS.get(reason, reason)} "
                f"(seq-length {job.seq_length}; no dataset written)")
    parts = [f"{n} skipped: {r}" for r, n in stats.skipped.items()]
    parts += [f"{n} rejected: {r}" for r, n in stats.rejected.items()]
    return f"no documents written from {total} trajectories ({'; '.join(parts)}; no dataset written)"
