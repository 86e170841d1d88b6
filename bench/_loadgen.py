"""A lean HTTP/1.1 keep-alive load generator, run in its own process by ``bench/callback.py``.

``python bench/_loadgen.py SPEC.json`` reads a spec::

    {"host": "127.0.0.1", "port": 8000, "path": "/api/webhooks/clay",
     "headers": {"x-clay-signature": "..."}, "bodies": ["{...}", ...],
     "concurrency": 32, "warmup": 3.0, "seconds": 20.0, "expect": "\\"result\\":\\"applied\\""}

opens ``concurrency`` keep-alive connections, and on each one sends a POST, waits for the
whole answer, and sends the next (one request in flight per connection, no pipelining).
Connection ``i`` sends bodies ``i, i + concurrency, i + 2 * concurrency, ...``, so every
request of a run is distinct as long as there are enough bodies (requests sent again after
a wrap-around are counted in ``reused``). Requests are encoded before the clock starts; an
answer is parsed only as far as its status line, Content-Length and body.

Only requests sent after the warm-up and answered before its end count towards the figures.
It prints ``W`` when the measured window opens, ``E`` when it closes (so the parent can sample
CPU times), then one JSON line with the results.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from array import array
from typing import Any

try:  # the same event loop as the servers, when available
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

CRLF2 = b"\r\n\r\n"
CL = b"\r\ncontent-length:"


class Stats:
    """Counters shared by every connection of the run."""

    def __init__(self, expect: bytes | None) -> None:
        self.expect = expect
        self.latencies = array("d")
        self.statuses: dict[int, int] = {}
        self.unexpected = 0  # answers (whole run) that were not 200 or lacked ``expect``
        self.unexpected_in_window = 0
        self.sample_bad: list[str] = []
        self.total = 0
        self.reused = 0
        self.disconnects = 0
        self.window_start = float("inf")
        self.window_end = float("inf")


class Connection(asyncio.Protocol):
    """One keep-alive connection sending its share of the requests one after the other."""

    def __init__(self, requests: list[bytes], stats: Stats, done: asyncio.Future[None]) -> None:
        self.requests = requests
        self.stats = stats
        self.done = done
        self.index = 0
        self.wrapped = False
        self.buf = bytearray()
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def start(self) -> None:
        self._send()

    def _send(self) -> None:
        now = time.perf_counter()
        if now >= self.stats.window_end:
            if not self.done.done():
                self.done.set_result(None)
            return
        if self.index >= len(self.requests):
            self.index = 0
            self.wrapped = True
        if self.wrapped:
            self.stats.reused += 1
        request = self.requests[self.index]
        self.index += 1
        self.sent_at = now
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        end = buf.find(CRLF2)
        if end < 0:
            return
        head = bytes(buf[:end]).lower()
        pos = head.find(CL)
        if pos < 0:
            length = 0
        else:
            stop = head.find(b"\r\n", pos + len(CL))
            length = int(head[pos + len(CL) : stop if stop >= 0 else None])
        total = end + 4 + length
        if len(buf) < total:
            return
        done_at = time.perf_counter()
        status = int(buf[9:12])
        body = bytes(buf[end + 4 : total])
        del buf[:total]
        st = self.stats
        st.total += 1
        ok = status == 200 and (st.expect is None or st.expect in body)
        in_window = self.sent_at >= st.window_start and done_at <= st.window_end
        if not ok:
            st.unexpected += 1
            if len(st.sample_bad) < 5:
                st.sample_bad.append(f"{status} {body[:200]!r}")
        if in_window:
            st.latencies.append(done_at - self.sent_at)
            st.statuses[status] = st.statuses.get(status, 0) + 1
            if not ok:
                st.unexpected_in_window += 1
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.stats.disconnects += 1
            self.done.set_result(None)


def build_requests(spec: dict[str, Any]) -> list[list[bytes]]:
    """The pre-encoded requests of every connection."""
    host = f"{spec['host']}:{spec['port']}"
    extra = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
    concurrency = int(spec["concurrency"])
    per_conn: list[list[bytes]] = [[] for _ in range(concurrency)]
    for i, body in enumerate(spec["bodies"]):
        raw = body.encode()
        head = (
            f"POST {spec['path']} HTTP/1.1\r\nhost: {host}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(raw)}\r\n{extra}\r\n"
        ).encode()
        per_conn[i % concurrency].append(head + raw)
    return per_conn


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Drive the load and return the figures."""
    per_conn = build_requests(spec)
    expect = spec.get("expect")
    stats = Stats(expect.encode() if expect else None)
    loop = asyncio.get_running_loop()
    conns: list[Connection] = []
    dones: list[asyncio.Future[None]] = []
    for requests in per_conn:
        done: asyncio.Future[None] = loop.create_future()
        _, proto = await loop.create_connection(
            lambda r=requests, d=done: Connection(r, stats, d), spec["host"], spec["port"]
        )
        conns.append(proto)
        dones.append(done)
    started = time.perf_counter()
    stats.window_start = started + float(spec["warmup"])
    stats.window_end = stats.window_start + float(spec["seconds"])
    for conn in conns:
        conn.start()
    await asyncio.sleep(max(0.0, stats.window_start - time.perf_counter()))
    cpu0 = time.process_time()
    print("W", flush=True)
    await asyncio.sleep(max(0.0, stats.window_end - time.perf_counter()))
    cpu1 = time.process_time()
    print("E", flush=True)
    await asyncio.wait(dones, timeout=30)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    lat = sorted(stats.latencies)
    seconds = float(spec["seconds"])
    return {
        "requests": len(lat),
        "rps": len(lat) / seconds,
        "p50_ms": percentile(lat, 0.50) * 1000,
        "p90_ms": percentile(lat, 0.90) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "max_ms": (lat[-1] * 1000) if lat else float("nan"),
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "unexpected_total": stats.unexpected,
        "unexpected_in_window": stats.unexpected_in_window,
        "answers_total": stats.total,
        "sample_unexpected": stats.sample_bad,
        "reused": stats.reused,
        "disconnects": stats.disconnects,
        "client_cpu_percent": 100.0 * (cpu1 - cpu0) / seconds,
    }


def main() -> None:
    """Entry point: ``python bench/_loadgen.py SPEC.json``."""
    with open(sys.argv[1], encoding="utf-8") as fh:
        spec = json.load(fh)
    result = uvloop.run(run(spec)) if uvloop is not None else asyncio.run(run(spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
