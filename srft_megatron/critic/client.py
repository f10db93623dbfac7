"""An asynchronous OpenAI chat-completions client over several replicas (vLLM servers).

Why not one `openai.AsyncOpenAI` per server: labelling a corpus needs *pool* behaviour that no
single-server client has: keep every replica busy, send each request to the replica with the
fewest outstanding requests, take a replica that stops answering out of rotation (its requests
go to the others) and put it back when its health check passes again. The project's venv has
httpx; vLLM stays in its own venv and is spoken to over HTTP only.

Failure policy, per request:
- time-out, connection error, HTTP 5xx or 429: retried with exponential back-off and jitter, on
  whichever replica is least loaded then; the replica's failure count goes up, and after
  `eject_after` failures in a row it is ejected and probed (`GET /v1/models`) every
  `health_interval` seconds until it answers again;
- any other 4xx (the request itself is bad, e.g. longer than the context): not retried;
- when every replica is ejected, requests wait for one to come back, up to `all_down_timeout`.

Credentials: an API key (`api_key`) is sent as `Authorization: Bearer KEY` to every replica (the
OpenAI convention vLLM's `--api-key` checks); `user:password@` in an endpoint URL is taken out of
the URL and sent as basic auth to that replica. Everything this module reports or records
(`Endpoint.url`, error messages, `Completion.endpoint`) carries the URL with credentials
redacted (`redact_url`), never the secret. A 401/403 at start-up is a configuration error.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from urllib.parse import unquote, urlsplit, urlunsplit


class RequestFailed(RuntimeError):
    """A request that cannot succeed (bad request, or retries used up); `retryable` says which."""

    def __init__(self, message: str, retryable: bool, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class NoHealthyEndpoint(RuntimeError):
    """Every replica has been out of rotation for longer than the allowed wait."""


class CredentialsRefused(ValueError):
    """A replica answered 401/403: a configuration error, not a replica that is down."""


def normalise_url(url: str) -> str:
    """`http://host:port` or `http://host:port/v1` -> `http://host:port/v1`."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def split_credentials(url: str) -> tuple[str, httpx.BasicAuth | None]:
    """`http://user:pw@host:8000/v1` -> (`http://host:8000/v1`, basic auth user/pw)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return (urlunsplit(parts._replace(netloc=netloc)),  # userinfo is percent-encoded in a URL
            httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or "")))


def redact_url(url: str) -> str:
    """The URL as it may be printed or recorded: userinfo replaced by `***`."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


@dataclass
class Endpoint:
    url: str  # redacted: safe to print and record
    base: str = ""  # the URL requests go to (credentials taken out)
    auth: httpx.BasicAuth | None = field(default=None, repr=False)
    outstanding: int = 0
    healthy: bool = True
    consecutive_failures: int = 0
    served: int = 0  # successful responses
    errors: int = 0  # failed attempts (time-outs, connection errors, 5xx)
    ejections: int = 0
    readmissions: int = 0
    max_model_len: int | None = None

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "served": self.served, "errors": self.errors, "ejections": self.ejections,
                "readmissions": self.readmissions, "healthy": self.healthy}


@dataclass
class Completion:
    text: str | None
    finish_reason: str | None
    usage: dict[str, int]
    endpoint: str
    latency_s: float


@dataclass
class PoolConfig:
    max_in_flight: int = 16  # per replica
    request_timeout: float = 600.0
    connect_timeout: float = 10.0
    retries: int = 6  # extra attempts after a time-out / connection error / 5xx
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    eject_after: int = 2
    health_interval: float = 2.0
    all_down_timeout: float = 300.0


@dataclass
class EndpointPool:
    urls: list[str]
    config: PoolConfig = field(default_factory=PoolConfig)
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.endpoints = []
        for raw in self.urls:
            base, auth = split_credentials(normalise_url(raw))
            self.endpoints.append(Endpoint(redact_url(normalise_url(raw)), base=base, auth=auth))
        if len({e.base for e in self.endpoints}) != len(self.endpoints):
            raise ValueError("the same endpoint is given twice")
        self._changed = asyncio.Condition()
        self._probes: dict[str, asyncio.Task] = {}
        limits = httpx.Limits(max_connections=self.config.max_in_flight * len(self.endpoints) + 8,
                              max_keepalive_connections=self.config.max_in_flight * len(self.endpoints))
        timeout = httpx.Timeout(self.config.request_timeout, connect=self.config.connect_timeout)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else None
        self.http = httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers)

    async def close(self) -> None:
        for task in self._probes.values():
            task.cancel()
        await asyncio.gather(*self._probes.values(), return_exceptions=True)
        await self.http.aclose()

    # --- discovery and health -------------------------------------------------------------
    async def _models(self, ep: Endpoint, timeout: float = 5.0) -> list[dict[str, Any]]:
        resp = await self.http.get(f"{ep.base}/models", timeout=timeout, auth=ep.auth or httpx.USE_CLIENT_DEFAULT)
        if resp.status_code in (401, 403):
            raise CredentialsRefused(f"{ep.url} refused the credentials (HTTP {resp.status_code}): pass the "
                                     f"server's key in OPENAI_API_KEY or --api-key-file")
        resp.raise_for_status()
        return resp.json().get("data", [])

    async def discover(self, model: str, wait: float) -> None:
        """Check which replicas serve `model` (waiting up to `wait` s for at least one).

        A replica that is down is ejected (and probed); one that serves other models is an error."""
        deadline = time.monotonic() + wait
        while True:
            for ep in self.endpoints:
                try:
                    models = await self._models(ep)
                except CredentialsRefused:
                    raise
                except (httpx.HTTPError, ValueError):
                    ep.healthy = False
                    continue
                names = [m.get("id") for m in models]
                if model not in names:
                    raise ValueError(f"{ep.url} serves {names}, not {model!r} (check --model)")
                ep.healthy = True
                ep.max_model_len = next((m.get("max_model_len") for m in models if m.get("id") == model), None)
            if any(ep.healthy for ep in self.endpoints) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        if not any(ep.healthy for ep in self.endpoints):
            raise NoHealthyEndpoint(f"no endpoint answered within {wait:.0f} s: "
                                    + ", ".join(ep.url for ep in self.endpoints))
        for ep in self.endpoints:
            if not ep.healthy:
                self._start_probe(ep)

    def _start_probe(self, ep: Endpoint) -> None:
        if ep.url not in self._probes or self._probes[ep.url].done():
            self._probes[ep.url] = asyncio.create_task(self._probe(ep))

    async def _probe(self, ep: Endpoint) -> None:
        while not ep.healthy:
            await asyncio.sleep(self.config.health_interval)
            try:
                await self._models(ep)
            except (httpx.HTTPError, ValueError):
                continue
            async with self._changed:
                ep.healthy, ep.consecutive_failures = True, 0
                ep.readmissions += 1
                self._changed.notify_all()

    # --- routing --------------------------------------------------------------------------
    def _pick(self) -> Endpoint | None:
        ready = [e for e in self.endpoints if e.healthy and e.outstanding < self.config.max_in_flight]
        return min(ready, key=lambda e: (e.outstanding, e.served + e.errors)) if ready else None

    async def acquire(self) -> Endpoint:
        """The healthy replica with the fewest outstanding requests (waits while all are busy)."""
        down_since: float | None = None
        async with self._changed:
            while (ep := self._pick()) is None:
                if not any(e.healthy for e in self.endpoints):
                    down_since = down_since or time.monotonic()
                    if time.monotonic() - down_since > self.config.all_down_timeout:
                        raise NoHealthyEndpoint(f"every endpoint has been down for over "
                                                f"{self.config.all_down_timeout:.0f} s")
                else:
                    down_since = None
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=1.0)
                except asyncio.TimeoutError:
                    pass
            ep.outstanding += 1
            return ep

    async def release(self, ep: Endpoint, ok: bool) -> None:
        async with self._changed:
            ep.outstanding -= 1
            if ok:
                ep.served += 1
                ep.consecutive_failures = 0
            else:
                ep.errors += 1
                ep.consecutive_failures += 1
                if ep.healthy and ep.consecutive_failures >= self.config.eject_after:
                    ep.healthy = False
                    ep.ejections += 1
                    self._start_probe(ep)
            self._changed.notify_all()

    # --- requests -------------------------------------------------------------------------
    async def chat(self, payload: dict[str, Any]) -> Completion:
        """POST /chat/completions with retries on time-outs, connection errors, 5xx and 429."""
        last = "no attempt"
        for attempt in range(self.config.retries + 1):
            if attempt:
                delay = min(self.config.backoff_max, self.config.backoff_base * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            ep = await self.acquire()
            start = time.monotonic()
            try:
                resp = await self.http.post(f"{ep.base}/chat/completions", json=payload,
                                            auth=ep.auth or httpx.USE_CLIENT_DEFAULT)
            except httpx.HTTPError as exc:  # time-out, refused, reset, protocol error
                await self.release(ep, ok=False)
                last = f"{ep.url}: {type(exc).__name__}: {exc}".strip()
                continue
            if resp.status_code >= 500 or resp.status_code == 429:
                await self.release(ep, ok=False)
                last = f"{ep.url}: HTTP {resp.status_code}: {resp.text[:300]}"
                continue
            if resp.status_code != 200:
                await self.release(ep, ok=True)  # the replica is fine; the request is not
                raise RequestFailed(f"{ep.url}: HTTP {resp.status_code}: {resp.text[:500]}",
                                    retryable=False, status=resp.status_code)
            try:
                body = resp.json()
                choice = body["choices"][0]
                text = choice["message"].get("content")
                finish = choice.get("finish_reason")
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                await self.release(ep, ok=False)
                last = f"{ep.url}: response is not a chat completion: {resp.text[:300]}"
                continue
            await self.release(ep, ok=True)
            usage = body.get("usage") or {}
            return Completion(text=text, finish_reason=finish,
                              usage={k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")},
                              endpoint=ep.url, latency_s=time.monotonic() - start)
        raise RequestFailed(f"gave up after {self.config.retries + 1} attempts; last: {last}", retryable=True)
