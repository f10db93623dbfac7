"""Credentials of the critic servers: an API key from OPENAI_API_KEY / --api-key-file arrives as a
Bearer header, `user:password@` in an endpoint URL as basic auth, and neither secret is in any
file the run writes, on stdout/stderr, or in the command line of the labelling process (`ps`).
A refused key is a configuration error that leaves no file behind. (Stub servers that check the
header like vLLM's --api-key; the real vLLM replica: tests/launch/test_critic_api_key.py.)"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading

import httpx

from srft_megatron.critic.client import redact_url, split_credentials
from tests.critic.openai_stub import StubServer
from tests.critic.test_client_stub import label_args, wait_for
from tests.launch.conftest import ROOT

KEY = "sk-test-9f3c1e77KEY"
PASSWORD = "pw-4d2b88PASSWORD"


def _srft(args, env):
    return subprocess.Popen([str(ROOT / ".venv" / "bin" / "srft"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _ps() -> str:
    return subprocess.run(["ps", "-eo", "pid,args", "ww"], capture_output=True, text=True, check=True).stdout


def _written(root) -> str:
    return "\n".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def test_key_as_bearer_userinfo_as_basic_auth_and_no_secret_written(trajectories, tiny_model, tmp_path):
    basic = "Basic " + base64.b64encode(f"critic:{PASSWORD}".encode()).decode()
    gate = threading.Event()
    out = tmp_path / "run" / "labels.jsonl"
    with StubServer("valid", auth=f"Bearer {KEY}", gate=gate) as keyed, \
         StubServer("valid", auth=basic, gate=gate) as userinfo:
        endpoints = tmp_path / "endpoints.txt"   # a URL with a password stays out of argv
        endpoints.write_text(userinfo.url.replace("http://", f"http://critic:{PASSWORD}@") + "\n")
        env = dict(os.environ, OPENAI_API_KEY=KEY)
        proc = _srft(label_args(trajectories, out, tiny_model, keyed.url,
                                extra=["--endpoints-file", str(endpoints)]), env)
        try:  # completions are held at the gate: the labeller is running now
            assert wait_for(lambda: keyed.requests + userinfo.requests > 0, timeout=120), proc.stderr.read()
            table = _ps()
            assert f"--endpoint {keyed.url}" in table             # the labeller's own command line ...
            assert KEY not in table and PASSWORD not in table     # ... holds no secret
            gate.set()
            stdout, stderr = proc.communicate(timeout=300)
        finally:
            gate.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    # each replica saw only its own credentials, on every request (GET /models and completions)
    assert keyed.headers and set(keyed.headers) == {f"Bearer {KEY}"}
    assert userinfo.headers and set(userinfo.headers) == {basic}
    labels = [json.loads(line) for line in out.read_text().splitlines()]
    redacted = userinfo.url.replace("http://", "http://***@")
    assert {r["critic"]["endpoint"] for r in labels} == {keyed.url, redacted}   # both served, one redacted
    assert redacted in stdout                                                   # the summary names it so
    endpoints.unlink()   # the one file that holds a secret on purpose
    for text in (stdout, stderr, _written(tmp_path)):
        assert KEY not in text and PASSWORD not in text


def test_key_file_and_refused_key_leave_no_file(trajectories, tiny_model, tmp_path):
    out = tmp_path / "labels.jsonl"
    key_file = tmp_path / "key"
    key_file.write_text("wrong-key\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    with StubServer("valid", auth=f"Bearer {KEY}") as stub:
        proc = _srft(label_args(trajectories, out, tiny_model, stub.url, extra=["--api-key-file", str(key_file)]), env)
        stdout, stderr = proc.communicate(timeout=120)   # (a hang fails the test; nothing to clean up on a pass)
        assert stub.headers == ["Bearer wrong-key"]   # the file's key was sent, once: no waiting on a 401
    assert proc.returncode == 2, stderr
    assert "refused the credentials (HTTP 401)" in stderr and "wrong-key" not in stdout + stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]   # no empty labels or failures file
    key_file.write_text(KEY)
    with StubServer("valid", auth=f"Bearer {KEY}") as stub:
        proc = _srft(label_args(trajectories, out, tiny_model, stub.url, extra=["--api-key-file", str(key_file)]), env)
        _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    assert out.exists() and not (tmp_path / "labels.jsonl.failures.jsonl").exists()


def test_userinfo_is_split_off_decoded_and_redacted():
    base, auth = split_credentials("http://critic:p%40ss%3Aword@[::1]:8000/v1")
    assert base == "http://[::1]:8000/v1"
    expected = "Basic " + base64.b64encode(b"critic:p@ss:word").decode()   # percent-decoded
    assert auth.auth_flow(httpx.Request("GET", base)).__next__().headers["Authorization"] == expected
    assert redact_url("http://critic:p%40ss@host:8000/v1") == "http://***@host:8000/v1"
    assert redact_url("http://host:8000/v1") == "http://host:8000/v1"
    assert split_credentials("http://host:8000/v1") == ("http://host:8000/v1", None)
