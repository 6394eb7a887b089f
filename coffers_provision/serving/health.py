"""Is a llama-server up, and how fast does it answer?

Every request goes over a stream the connector opens to the server's port (a TCP socket
here, a direct-tcpip channel through SSH there), so a server bound to 127.0.0.1 on a
remote host is reached without opening its port to the network. HTTP itself is the
standard library's client, given that stream as its socket.

Readiness is llama-server's own: `/health` answers 503 while the model loads and 200 once
it can serve. The figures are the server's own `timings` for one short, seeded completion.
"""

from __future__ import annotations

import http.client
import io
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..errors import HostError

POLL_S = 0.25  # between /health attempts while the model loads
REQUEST_S = 10.0


class Stream(Protocol):
    def sendall(self, data: bytes) -> Any: ...
    def recv(self, n: int) -> bytes: ...
    def settimeout(self, t: float | None) -> Any: ...
    def close(self) -> Any: ...


Opener = Callable[[], Stream]  # a fresh stream to the server for each request


class _Raw(io.RawIOBase):
    """recv() as a raw file, so the standard library's buffering reads responses the same
    way from a socket and from an SSH channel."""

    def __init__(self, stream: Stream):
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._stream.recv(len(buf))
        buf[: len(data)] = data
        return len(data)


class _Socket:
    """What http.client needs of a socket, over any stream."""

    def __init__(self, stream: Stream):
        self._stream = stream

    def sendall(self, data: bytes) -> None:
        self._stream.sendall(data)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_Raw(self._stream))

    def close(self) -> None:
        """Nothing yet: http.client closes its socket as soon as it has the headers of a
        `Connection: close` answer, before the body is read (a real socket stays open while
        its file does). request() closes the stream once the body is in."""


class _Conn(http.client.HTTPConnection):
    """An HTTP connection over a stream someone else opened."""

    def __init__(self, stream: Stream, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._stream = stream

    def connect(self) -> None:
        self._stream.settimeout(self.timeout)
        self.sock = _Socket(self._stream)  # type: ignore[assignment]


def request(opener: Opener, method: str, path: str, body: Any = None, *, timeout: float = REQUEST_S) -> tuple[int, bytes]:
    """(status, body) of one request; a failure to connect or read raises OSError/HTTPException."""
    stream = opener()
    conn = _Conn(stream, timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Connection": "close"} if data else {"Connection": "close"}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
        stream.close()


def _short(body: bytes) -> str:
    return body.decode("utf-8", "replace").strip().replace("\n", " ")[:200]


def wait_healthy(opener: Opener, timeout_s: float, *, alive: Callable[[], str | None] = lambda: None) -> float:
    """Seconds until `/health` answered 200; HostError after `timeout_s`, or at once when
    `alive()` says the process is gone (its message says why)."""
    start = time.monotonic()
    deadline = start + timeout_s
    last = "no answer yet"
    while True:
        try:
            status, body = request(opener, "GET", "/health", timeout=min(REQUEST_S, max(1.0, deadline - time.monotonic())))
            if status == 200:
                return time.monotonic() - start
            last = f"/health answered {status} {_short(body)}"
        except (OSError, http.client.HTTPException, HostError) as e:  # not listening yet
            last = f"/health: {e or type(e).__name__}"
        gone = alive()
        if gone:
            raise HostError(f"{gone}; last {last}")
        if time.monotonic() >= deadline:
            raise HostError(f"no 200 from /health within {timeout_s:.0f} s; last {last}")
        time.sleep(POLL_S)


@dataclass(frozen=True)
class Timings:
    """llama-server's own figures for one completion."""

    prompt_tokens: int
    prompt_per_second: float
    predicted_tokens: int
    predicted_per_second: float
    content: str


def parse_timings(body: bytes) -> Timings:
    """The `timings` of a /completion answer; HostError naming what is missing."""
    try:
        doc = json.loads(body)
        t = doc["timings"]
        return Timings(int(t["prompt_n"]), float(t["prompt_per_second"]), int(t["predicted_n"]),
                       float(t["predicted_per_second"]), str(doc.get("content", "")))
    except (ValueError, KeyError, TypeError) as e:
        raise HostError(f"/completion answer has no usable timings ({type(e).__name__}: {e}): {_short(body)}") from None


def completion(opener: Opener, prompt: str, *, n_predict: int, seed: int, timeout: float = 300.0) -> Timings:
    """One greedy, seeded completion of `n_predict` tokens (no prompt cache: every call
    measures the same work)."""
    body = {"prompt": prompt, "n_predict": n_predict, "seed": seed, "temperature": 0.0,
            "cache_prompt": False, "ignore_eos": True}
    try:
        status, answer = request(opener, "POST", "/completion", body, timeout=timeout)
    except (OSError, http.client.HTTPException) as e:
        raise HostError(f"/completion: {e or type(e).__name__}") from None
    if status != 200:
        raise HostError(f"/completion answered {status}: {_short(answer)}")
    return parse_timings(answer)

