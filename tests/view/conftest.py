"""Headless Chromium for the viewer tests: Debian's package, provided by scripts/chromium.sh.

`browse` loads a page in a fresh profile and returns the finished process (its stdout is the
rendered DOM with `--dump-dom`); the `chromium` fixture is session-wide (one install check)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def chromium() -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "chromium.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"scripts/chromium.sh could not provide chromium: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip().splitlines()[-1]


def browse(chromium: str, tmp: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", f"--user-data-dir={profile}", *args, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc
