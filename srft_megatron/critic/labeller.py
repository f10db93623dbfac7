"""Label a trajectories file with a critic served on several replicas; resumable.

Why one loop of workers over one pool: the replicas are the scarce resource, so the labeller
keeps `max_in_flight` requests outstanding on every healthy replica and lets the pool route each
to the least-loaded one. Each worker takes the next unlabelled trajectory, builds its prompt
(transcript shortened to the budget), asks the critic under the bounded JSON schema, validates
the answer (a wrong one is asked again, `invalid_retries` times), and appends either a label
record (DESIGN §2) to the output or a failure, with its reason and the raw answers, to the
failures file. Both files are append-only and resumable (`writer.py`): a restart skips every
id already in the output, so nothing is labelled twice and nothing is lost. At the end of a run
the failures file is rewritten (atomically) to the latest failure of each trajectory that is
still unlabelled, so a trajectory labelled on a later run leaves no stale failure behind. A run
that stops on a configuration error leaves no empty file it created.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from srft_megatron.critic.client import EndpointPool, PoolConfig, RequestFailed
from srft_megatron.critic.prompt import PromptTemplate
from srft_megatron.critic.schema import InvalidAnswer, label_schema, parse_answer, response_format
from srft_megatron.critic.transcript import TokenCounter, build_prompt
from srft_megatron.critic.writer import ResumableJsonlWriter
from srft_megatron.errors import ConfigError, InputError
from srft_megatron.trajectory import LabelRecord, Trajectory, read_trajectories

MARGIN_TOKENS = 16  # slack between our token count and the server's


@dataclass
class LabelConfig:
    model: str
    endpoints: list[str]
    template: PromptTemplate
    tokenizer: str = "qwen2.5"
    temperature: float = 0.0
    max_tokens: int | None = None  # None: 64 + ideal_path_chars + 40 per step
    ideal_path_chars: int = 1200
    max_model_len: int | None = None  # None: asked from the servers
    invalid_retries: int = 2
    wait_for_endpoints: float = 60.0
    pool: PoolConfig = field(default_factory=PoolConfig)
    api_key: str | None = field(default=None, repr=False)  # sent as a Bearer token, never recorded

    def answer_tokens(self, num_steps: int) -> int:
        return self.max_tokens or 64 + self.ideal_path_chars + 40 * num_steps


@dataclass
class Totals:
    labelled: int = 0
    failed: int = 0
    skipped: int = 0  # already in the output
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    invalid_answers: int = 0
    truncated_trajectories: int = 0
    elapsed_s: float = 0.0
    endpoints: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.labelled / self.elapsed_s if self.elapsed_s else 0.0
        lines = [f"labelled {self.labelled}, failed {self.failed}, skipped (already done) {self.skipped} "
                 f"in {self.elapsed_s:.1f} s ({rate:.2f} trajectories/s)",
                 f"requests {self.requests} (invalid answers {self.invalid_answers}); tokens: prompt "
                 f"{self.prompt_tokens}, completion {self.completion_tokens}; transcripts shortened: "
                 f"{self.truncated_trajectories}"]
        for ep in self.endpoints:
            lines.append(f"  {ep['url']}: served {ep['served']}, errors {ep['errors']}, "
                         f"ejected {ep['ejections']}x, re-admitted {ep['readmissions']}x")
        return "\n".join(lines)


def failure_record(error: InputError, attempts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Same keys as `RejectLog` entries, plus the raw attempts."""
    out = {"reason": error.reason, "error": str(error), "file": error.file, "line": error.line,
           "id": error.traj_id, "step": error.step, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if attempts is not None:
        out["attempts"] = attempts
    return out


def _failure_key(record: dict[str, Any]) -> tuple:
    """Input errors (a bad or duplicate line) are one per input line; labelling failures one per id."""
    if record.get("line") is not None:
        return ("line", record.get("file"), record.get("line"))
    return ("id", record.get("id"))


class Labeller:
    def __init__(self, config: LabelConfig, counter: TokenCounter):
        self.config = config
        self.counter = counter
        self.totals = Totals()
        self._input_failures: set[tuple] = set()  # input-line failures found by this run
        self._read_all = False  # this run read the whole input (so it saw every input error)
        self._tokenizer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="critic-prompt")

    def _stale(self, record: dict[str, Any], labelled: set[str]) -> bool:
        """A failure superseded since: its trajectory is labelled now, or the input line it
        names was read again by this run and found fine."""
        key = _failure_key(record)
        if key[0] == "line":
            return self._read_all and key not in self._input_failures
        return record.get("id") in labelled

    def critic_meta(self, schema_steps: int) -> dict[str, Any]:
        c = self.config
        return {"model": c.model, "prompt_sha256": c.template.sha256, "prompt": c.template.source,
                "temperature": c.temperature, "max_tokens": c.answer_tokens(schema_steps),
                "ideal_path_chars": c.ideal_path_chars, "tokenizer": c.tokenizer}

    async def label_one(self, pool: EndpointPool, traj: Trajectory, budget_len: int) -> tuple[dict, bool]:
        """Return `(record, ok)`: a label record, or a failure record with every attempt."""
        c = self.config
        answer_tokens = c.answer_tokens(traj.num_steps)
        budget = budget_len - answer_tokens - MARGIN_TOKENS
        try:  # off the event loop, on one thread: HF tokenizers are not safe to share across threads
            prompt = await asyncio.get_running_loop().run_in_executor(
                self._tokenizer_thread, build_prompt, traj, c.template, self.counter, budget)
        except InputError as err:
            return failure_record(err.located(traj_id=traj.id)), False
        schema = label_schema(traj.num_steps, c.ideal_path_chars)
        payload = {"model": c.model, "messages": prompt.messages, "temperature": c.temperature,
                   "max_tokens": answer_tokens, "response_format": response_format(schema)}
        attempts: list[dict[str, Any]] = []
        for _ in range(c.invalid_retries + 1):
            try:
                done = await pool.chat(payload)
            except RequestFailed as exc:
                attempts.append({"error": str(exc)})
                return failure_record(InputError(f"request failed: {exc}", traj_id=traj.id), attempts), False
            self.totals.requests += 1
            self.totals.prompt_tokens += done.usage["prompt_tokens"]
            self.totals.completion_tokens += done.usage["completion_tokens"]
            try:
                answer = parse_answer(done.text, traj.num_steps, schema)
            except InvalidAnswer as exc:
                self.totals.invalid_answers += 1
                why = f"{exc} (finish_reason {done.finish_reason})"
                attempts.append({"endpoint": done.endpoint, "error": why, "raw": done.text,
                                 "finish_reason": done.finish_reason, "usage": done.usage})
                continue
            critic = self.critic_meta(traj.num_steps) | {"endpoint": done.endpoint, "truncation": prompt.truncation,
                                                         "ideal_path": answer.ideal_path}
            usage = {"prompt_tokens": done.usage["prompt_tokens"], "completion_tokens": done.usage["completion_tokens"],
                     "requests": len(attempts) + 1}
            record = LabelRecord(id=traj.id, steps=answer.steps, critic=critic, usage=usage).to_json()
            LabelRecord.from_json(record, num_steps=traj.num_steps)  # the contract, checked before writing
            if prompt.truncation.get("cuts"):
                self.totals.truncated_trajectories += 1
            return record, True
        err = InputError(f"invalid answer after {len(attempts)} attempts: {attempts[-1]['error']}", traj_id=traj.id)
        return failure_record(err, attempts), False

    async def run(self, trajectories: str, output: str, failures: str, retry_failed: bool = True,
                  progress: bool = True) -> Totals:
        c = self.config
        start = time.monotonic()
        created = [p for p in (Path(output), Path(failures)) if not p.exists()]
        try:
            with ResumableJsonlWriter(output) as out, ResumableJsonlWriter(failures) as fail:
                skip = set(out.done_ids) if retry_failed else out.done_ids | fail.done_ids
                pool = EndpointPool(c.endpoints, c.pool, api_key=c.api_key)
                try:
                    await pool.discover(c.model, c.wait_for_endpoints)
                    budget_len = c.max_model_len or min((e.max_model_len for e in pool.endpoints
                                                         if e.max_model_len), default=None)
                    if not budget_len:
                        raise ConfigError("the servers do not report max_model_len: pass --max-model-len")
                    await self._work(pool, trajectories, out, fail, skip, budget_len, progress)
                finally:
                    self.totals.endpoints = [e.stats() for e in pool.endpoints]
                    await pool.close()
                    fail.rewrite(key=_failure_key, drop=lambda r: self._stale(r, out.done_ids))
        except BaseException:
            for path in created:  # stopped before writing anything: leave no empty file behind
                if path.exists() and path.stat().st_size == 0:
                    path.unlink()
            raise
        self.totals.elapsed_s = time.monotonic() - start
        return self.totals

    async def _work(self, pool, trajectories, out, fail, skip, budget_len, progress) -> None:
        c = self.config
        n_workers = c.pool.max_in_flight * len(pool.endpoints)
        queue: asyncio.Queue = asyncio.Queue(maxsize=2 * n_workers)
        # the bar counts this run's work only, so its rate and ETA are true after a resume
        # (ids done earlier but absent from this input make the total an underestimate)
        lines = sum(1 for line in open(trajectories, encoding="utf-8") if line.strip())
        bar = tqdm(total=max(0, lines - len(skip)), unit="traj", disable=not progress, dynamic_ncols=True,
                   desc="labelling")
        seen: set[str] = set()

        def input_failure(record: dict[str, Any]) -> None:
            fail.write(record)
            self._input_failures.add(_failure_key(record))
            self.totals.failed += 1
            bar.update(1)

        async def produce() -> None:
            for line, item in read_trajectories(trajectories):
                if isinstance(item, InputError):
                    input_failure(failure_record(item))
                    continue
                if item.id in seen:
                    input_failure(failure_record(InputError("duplicate trajectory id", file=trajectories,
                                                            line=line, traj_id=item.id)))
                    continue
                seen.add(item.id)
                if item.id in skip:
                    self.totals.skipped += 1
                    continue
                await queue.put(item)
                await asyncio.sleep(0)
            self._read_all = True
            for _ in range(n_workers):
                await queue.put(None)

        async def work() -> None:
            while (traj := await queue.get()) is not None:
                record, ok = await self.label_one(pool, traj, budget_len)
                (out if ok else fail).write(record)
                if ok:
                    self.totals.labelled += 1
                else:
                    self.totals.failed += 1
                elapsed = max(1e-6, time.monotonic() - t0)
                bar.set_postfix_str(f"tok/s {(self.totals.prompt_tokens + self.totals.completion_tokens) / elapsed:.0f}"
                                    f" failed {self.totals.failed}", refresh=False)
                bar.update(1)

        t0 = time.monotonic()
        workers = [asyncio.create_task(work()) for _ in range(n_workers)]
        try:
            await asyncio.gather(produce(), *workers)
        except BaseException:  # e.g. NoHealthyEndpoint: stop the others; what is written stays
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        finally:
            bar.close()
