"""Append-only JSONL output that survives kills and resumes without duplicates.

Why not `atomic_open` (the house rule for outputs): labelling a corpus takes hours on many
replicas and may be pre-empted; writing everything at the end would lose all of it. So the
labels file is the log of finished work instead: each record is one line, written whole,
flushed and fsynced as soon as its answer is validated. On start the writer

- takes an exclusive lock on the file (`flock`), so two labellers never append to one file;
- cuts a partial last line (the process was killed mid-write) back to the last newline, which
  is the only place a kill can leave damage;
- collects the ids already written, which the labeller skips.

A malformed *complete* line is not ours to repair: it is reported with file and line.

A side file whose records go stale (the failures file: a trajectory that failed once may be
labelled by a later run) is compacted at the end of a run with `rewrite`: the surviving records
go to a temporary file that replaces the old one atomically, under the same lock.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, Callable, Hashable

from srft_megatron.errors import InputError
from srft_megatron.io import atomic_open


class ResumableJsonlWriter:
    def __init__(self, path: str | os.PathLike, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.handle = open(self.path, "a+b")
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise InputError("another process is writing this file (locked)", file=str(self.path)) from None
        self.repaired_bytes = self._cut_partial_line()
        self.done_ids: set[str] = set()
        self.records_read = 0
        self._read_done()

    def _cut_partial_line(self) -> int:
        self.handle.seek(0, os.SEEK_END)
        size = self.handle.tell()
        if size == 0:
            return 0
        self.handle.seek(size - 1)
        if self.handle.read(1) == b"\n":
            return 0
        block, end = 65536, size
        while end > 0:  # find the last newline, reading backwards
            start = max(0, end - block)
            self.handle.seek(start)
            chunk = self.handle.read(end - start)
            pos = chunk.rfind(b"\n")
            if pos >= 0:
                keep = start + pos + 1
                break
            end = start
        else:
            keep = 0
        self.handle.truncate(keep)
        self.handle.flush()
        os.fsync(self.handle.fileno())
        return size - keep

    def _read_done(self) -> None:
        self.handle.seek(0)
        for number, raw in enumerate(self.handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InputError(f"malformed JSON in an existing output: {exc.msg} (remove or fix the line)",
                                 file=str(self.path), line=number) from None
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                self.done_ids.add(obj["id"])
            self.records_read += 1
        self.handle.seek(0, os.SEEK_END)

    def write(self, obj: dict[str, Any]) -> None:
        """Append one record as one line; on return it is on disk."""
        line = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
        self.handle.write(line)
        self.handle.flush()
        if self.fsync:
            os.fsync(self.handle.fileno())
        if isinstance(obj.get("id"), str):
            self.done_ids.add(obj["id"])

    def records(self) -> list[dict[str, Any]]:
        """Every complete record written so far (ours and earlier runs'), in file order."""
        self.handle.flush()
        self.handle.seek(0)
        out = [json.loads(raw) for raw in self.handle if raw.strip()]
        self.handle.seek(0, os.SEEK_END)
        return out

    def rewrite(self, key: Callable[[dict[str, Any]], Hashable], drop: Callable[[dict[str, Any]], bool]) -> int:
        """Keep the last record per `key`, minus those `drop` says are stale; replace the file
        atomically (an empty result removes it). Returns the number of records kept. The writer
        is closed afterwards: the lock was on the replaced file."""
        latest: dict[Hashable, dict[str, Any]] = {}
        for record in self.records():
            latest.pop(key(record), None)   # re-insert: file order follows the latest record
            latest[key(record)] = record
        kept = [r for r in latest.values() if not drop(r)]
        if kept:
            with atomic_open(self.path, "w", encoding="utf-8") as handle:
                for record in kept:
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self.path.unlink(missing_ok=True)
        self.close()
        return len(kept)

    def close(self) -> None:
        if not self.handle.closed:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()

    def __enter__(self) -> "ResumableJsonlWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
