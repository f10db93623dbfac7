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


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str | InputError]]:
    """Yield `(line_number, text)` for each non-blank line, decoding each line on its own.

    Why per line: one record with bytes that are not UTF-8 (a binary blob pasted into a tool
    output, a truncated multi-byte character) must cost that record, not the whole file. Such a
    line comes back as an `InputError` naming file, line and the byte offset."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, InputError(f"invalid UTF-8 (byte {exc.start} of the line: "
                                         f"{raw[exc.start:exc.start + 1]!r})", file=str(path), line=number)
                continue
            if text.strip():
                yield number, text


def iter_jsonl_tolerant(path: str | os.PathLike) -> Iterator[tuple[int, Any | InputError]]:
    """Yield `(line_number, object)`, or an `InputError` in place of each line that is not
    UTF-8 or not JSON (file and line named). Blank lines are skipped."""
    for number, text in iter_lines(path):
        if isinstance(text, InputError):
            yield number, text
            continue
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, InputError(f"malformed JSON: {exc.msg} at column {exc.colno}",
                                     file=str(path), line=number)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield `(line_number, object)`; a malformed line raises `InputError` naming file and line.

    For inputs where one bad line must stop the run; stages that reject and go on use
    `iter_jsonl_tolerant`."""
    for number, obj in iter_jsonl_tolerant(path):
        if isinstance(obj, InputError):
            raise obj
        yield number, obj


def read_text(path: str | os.PathLike) -> str:
    """A whole UTF-8 file; bytes that are not UTF-8 raise `InputError` naming the file and the
    line they are on (instead of a `UnicodeDecodeError` traceback)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(f"invalid UTF-8 (byte {exc.start} of the file)", file=str(path), line=line) from None


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
