"""Checkpoint integrity: a checksum of every file, recorded at save, verified before any load.

Every checkpoint `srft train` or `srft convert from-hf` writes ends with its marker,
`srft_checkpoint.json`, and the marker records each file of the checkpoint (relative path,
size, xxh3-128 digest — a fast non-cryptographic hash: ~10 GB/s a core, so hashing costs a
small fraction of writing). Resume, `train.init_from`, `srft convert to-hf` and `convert verify`
call `verify_checkpoint` first: a file missing (a partial copy), of another size (truncated), or
whose digest differs (a flipped byte, a torn write) is one `CheckpointError` line naming the
checkpoint and the file, before megatron-core reads anything. Checkpoints written before
checksums existed are loaded with a warning.

Work is shared: under torch.distributed every rank hashes a share of the files (the shards it
wrote itself, then the rest size-balanced; the same deterministic split on every rank) with a
few threads, and the results are gathered,
so every rank raises the same error and the wall time is the largest share. The cost is
reported in seconds per GB.
"""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from srft_megatron.errors import CheckpointError

ALGORITHM = "xxh3_128"
MARKER = "srft_checkpoint.json"
CHUNK = 16 << 20


def hash_file(path: str | os.PathLike) -> str:
    import xxhash

    h = xxhash.xxh3_128()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def list_files(ckpt_dir: str | os.PathLike) -> list[str]:
    """Every regular file under the checkpoint except the marker, as sorted relative paths."""
    root = Path(ckpt_dir)
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if rel != MARKER and not name.endswith(".tmp"):
                out.append(rel)
    return sorted(out)


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


_WRITER_FILE = re.compile(r"^__(\d+)_\d+\.distcp$")  # torch_dist: __<global rank>_<n>.distcp


def _share(items: list[tuple[str, int]], rank: int, world: int) -> list[str]:
    """This rank's files (the same split on every rank): a shard file goes to the rank that
    wrote it (its page cache, its node: no reading across the network after a save), the
    others largest first to the least-loaded rank."""
    loads = [0] * world
    owner: dict[str, int] = {}
    rest = []
    for name, size in items:
        match = _WRITER_FILE.match(os.path.basename(name))
        if match and int(match.group(1)) < world:
            owner[name] = int(match.group(1))
            loads[owner[name]] += size
        else:
            rest.append((name, size))
    for name, size in sorted(rest, key=lambda kv: (-kv[1], kv[0])):
        r = min(range(world), key=lambda k: (loads[k], k))
        loads[r] += size
        owner[name] = r
    return sorted(n for n, r in owner.items() if r == rank)


def _hash_share(root: Path, names: list[str], threads: int | None = None) -> dict[str, str]:
    if not names:
        return {}
    threads = threads or min(8, os.cpu_count() or 1, len(names))

    def one(name: str) -> str:
        try:
            return hash_file(root / name)
        except OSError as exc:  # reported like a mismatch, so every rank reaches the gather
            return f"unreadable ({type(exc).__name__}: {exc})"

    with ThreadPoolExecutor(max_workers=threads) as pool:
        digests = list(pool.map(one, names))
    return dict(zip(names, digests))


def _gather(local: Any) -> list[Any]:
    dist = _dist()
    if dist is None:
        return [local]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, local)
    return out


def checksum_directory(ckpt_dir: str | os.PathLike) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    """(files, cost) for a freshly written checkpoint; collective under torch.distributed.

    files: {relative path: {"size": bytes, ALGORITHM: hex digest}}; cost: bytes and seconds."""
    root = Path(ckpt_dir)
    start = time.perf_counter()
    sizes = {name: (root / name).stat().st_size for name in list_files(root)}
    dist = _dist()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    local = _hash_share(root, _share(list(sizes.items()), rank, world))
    seconds = time.perf_counter() - start
    digests: dict[str, str] = {}
    slowest = 0.0
    for part, secs in _gather((local, seconds)):
        digests.update(part)
        slowest = max(slowest, secs)
    files = {name: {"size": sizes[name], ALGORITHM: digests[name]} for name in sorted(sizes)}
    return files, {"bytes": float(sum(sizes.values())), "seconds": slowest}


def read_marker(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's marker (written last: its absence means the save did not finish)."""
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / MARKER
    if not path.is_file():
        raise CheckpointError(f"checkpoint {ckpt_dir} is incomplete: no {MARKER} (written last, so the save "
                              "did not finish)")
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {ckpt_dir}: {MARKER} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(marker, dict):
        raise CheckpointError(f"checkpoint {ckpt_dir}: {MARKER} is not an object")
    return marker


def check_files(ckpt_dir: str | os.PathLike) -> dict[str, Any]:
    """The cheap part of verification (no hashing): the marker reads and every recorded file is
    there with its recorded size. Returns the marker."""
    root = Path(ckpt_dir)
    marker = read_marker(root)
    files = marker.get("files")
    if not isinstance(files, dict):
        return marker  # written before checksums: nothing recorded to compare with
    problems = []
    for name, rec in sorted(files.items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{name} is missing (a partial checkpoint)")
            continue
        size = path.stat().st_size
        if size != rec.get("size"):
            problems.append(f"{name} has {size} bytes, {MARKER} records {rec.get('size')} (truncated or "
                            "overwritten)")
    if problems:
        raise CheckpointError(_one_line(root, problems))
    return marker


def _one_line(root: Path, problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"checkpoint {root} is corrupted: {problems[0]}{more}; refusing to load it"


def verify_checkpoint(ckpt_dir: str | os.PathLike, *, threads: int | None = None,
                      require_marker: bool = True) -> dict[str, Any]:
    """Check every recorded file's size and checksum; collective under torch.distributed.

    Returns {"verified": bool, "reason", "files", "bytes", "seconds", "seconds_per_gb"}; raises
    CheckpointError (the same on every rank: they all see the same files) naming the first bad
    file. `require_marker=False` accepts a checkpoint with no marker at all (one written by
    other tools), unverified."""
    root = Path(ckpt_dir)
    start = time.perf_counter()
    problems: list[str] = []
    unverified = {"verified": False, "files": 0, "bytes": 0.0, "seconds": 0.0, "seconds_per_gb": 0.0}
    if not require_marker and not (root / MARKER).exists():
        return {**unverified, "reason": f"no {MARKER} (not written by srft)"}
    marker = check_files(root)
    files = marker.get("files")
    if not isinstance(files, dict):
        return {**unverified, "reason": "written before checksums were recorded"}
    algorithm = marker.get("checksum_algorithm", ALGORITHM)
    if algorithm != ALGORITHM:
        raise CheckpointError(f"checkpoint {root}: {MARKER} uses checksum {algorithm!r}, this version knows "
                              f"{ALGORITHM!r}")
    dist = _dist()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    share = _share([(n, int(r["size"])) for n, r in files.items()], rank, world)
    local = _hash_share(root, share, threads)
    mine = [f"{n} does not match its checksum ({ALGORITHM} {local[n]}, recorded {files[n][ALGORITHM]})"
            for n in share if local[n] != files[n].get(ALGORITHM)]
    seconds = time.perf_counter() - start
    slowest = 0.0
    for bad, secs in _gather((mine, seconds)):
        problems += bad
        slowest = max(slowest, secs)
    if problems:
        raise CheckpointError(_one_line(root, sorted(problems)))
    total = float(sum(int(r["size"]) for r in files.values()))
    return {"verified": True, "files": len(files), "bytes": total, "seconds": slowest,
            "seconds_per_gb": slowest / max(total / 1e9, 1e-9)}


def describe(report: dict[str, Any]) -> str:
    """'12 files, 1.23 GB in 0.15 s (0.12 s/GB)' or the reason nothing was verified."""
    if not report.get("verified"):
        return f"not verified: {report.get('reason', 'no checksums recorded')}"
    return (f"{report['files']} files, {report['bytes'] / 1e9:.3g} GB verified in {report['seconds']:.2f} s "
            f"({report['seconds_per_gb']:.2f} s/GB)")
