"""File I/O shared by every stage: atomic writes, JSONL with line numbers, reject files.

House rule: a crash never leaves a half-written output. Writers go to a temporary file in
the destination directory and are renamed into place only when complete (`os.replace` is
atomic on POSIX within one filesystem). Bad records are never dropped silently: they go to
a reject file, one JSON object per line, with the reason and where they came from.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from srft_megatron.errors import InputError


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(final: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[Any]:
    """Open a temporary file for writing; it replaces `final` when the block exits cleanly."""
    with atomic_path(final) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=2, sort_keys=True)
        handle.write("\n")


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield `(line_number, object)`; a malformed line raises `InputError` naming file and line.

    Blank lines are skipped. Callers that must keep going past bad lines catch the error
    per line (see `JsonlRecords`)."""
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw)
            except json.JSONDecodeError as exc:
                raise InputError(f"malformed JSON: {exc.msg} at column {exc.colno}",
                                 file=str(path), line=number) from None


def iter_jsonl_tolerant(path: str | os.PathLike) -> Iterator[tuple[int, Any | InputError]]:
    """Like `iter_jsonl` but yields an `InputError` in place of each malformed line."""
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw)
            except json.JSONDecodeError as exc:
                yield number, InputError(f"malformed JSON: {exc.msg} at column {exc.colno}",
                                         file=str(path), line=number)


class RejectLog:
    """Collects rejected records with their reasons and writes them atomically at the end.

    `add` also counts reasons, so stages can put the counts in their metadata."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self.records: list[dict[str, Any]] = []

    def add(self, error: InputError, record: Any = None) -> None:
        entry = {"reason": error.reason, "error": str(error), "file": error.file,
                 "line": error.line, "id": error.traj_id, "step": error.step}
        if record is not None:
            entry["record"] = record
        self.records.append(entry)

    def __len__(self) -> int:
        return len(self.records)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for rec in self.records:
            out[rec["reason"]] = out.get(rec["reason"], 0) + 1
        return out

    def write(self) -> None:
        if self.path is None or not self.records:
            return
        with atomic_open(self.path, "w", encoding="utf-8") as handle:
            for rec in self.records:
                handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
