"""SSE load: write-to-event latency and memory per idle connection, from a process of its own.

Opens every subscription (``GET …/health-information/events``) on raw sockets, waits for each
snapshot, then writes (PATCH, one at a time on keep-alive connections, paced) and timestamps
each ``updated`` event as it arrives on each subscription. Latency = event received − PATCH
sent, per delivery. Memory: the server's resident set before and after the subscriptions are
open (idle), divided by their number. The plan is a JSON file:

    {"subscribers": [{"kit", "token"}], "writers": [{"kit", "token", "field"}],
     "interval": seconds between writes, "seconds": how long to write, "measure_memory": bool}

    python -m bench.sse_load --port P --plan FILE [--server-pid PID]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.measure import from_samples

HOST = "127.0.0.1"
EVENT = re.compile(rb"event: (\w+)\nid: (\d+)\n")
CONNECT_PARALLEL = 50


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Subscription(asyncio.Protocol):
    """Records (event name, version, arrival time) for each event frame."""

    def __init__(self, kit: str, arrivals: dict[tuple[str, int], list[float]]) -> None:
        self.kit = kit
        self.arrivals = arrivals
        self.buffer = bytearray()
        self.status: int | None = None
        self.snapshot = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buffer += data
        if self.status is None and b"\r\n" in self.buffer:
            self.status = int(self.buffer.split(b" ", 2)[1])
            if self.status != 200 and not self.snapshot.done():
                self.snapshot.set_exception(RuntimeError(f"SSE status {self.status}"))
        end = 0
        for match in EVENT.finditer(self.buffer):
            name, version = match.group(1), int(match.group(2))
            end = match.end()
            if name == b"snapshot":
                if not self.snapshot.done():
                    self.snapshot.set_result(version)
            else:
                self.arrivals[(self.kit, version)].append(now)
        if end:
            del self.buffer[:end]
        elif len(self.buffer) > 65536:
            del self.buffer[:-256]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.snapshot.done():
            self.snapshot.set_exception(RuntimeError(f"closed before the snapshot: {exc}"))


async def subscribe(
    port: int, kit: str, token: str, arrivals: dict[tuple[str, int], list[float]]
) -> Subscription:
    loop = asyncio.get_running_loop()
    _, sub = await loop.create_connection(lambda: Subscription(kit, arrivals), HOST, port)
    assert sub.transport is not None
    sub.transport.write(
        (
            f"GET /v1/kits/{kit}/health-information/events HTTP/1.1\r\nHost: {HOST}\r\n"
            f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()
    )
    await asyncio.wait_for(sub.snapshot, timeout=30)
    return sub


class Writer:
    """One keep-alive connection sending PATCH requests, one at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def patch(self, kit: str, token: str, field: str, value: int) -> tuple[int, int | None]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        body = json.dumps({"answers": {field: value}}).encode()
        self.writer.write(
            (
                f"PATCH /v1/kits/{kit}/health-information HTTP/1.1\r\nHost: {HOST}\r\n"
                f"Authorization: Bearer {token}\r\n"
                "Content-Type: application/merge-patch+json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        tag = headers.get("etag", "").strip('"')
        return status, int(tag) if tag.isdigit() else None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def run(port: int, plan: dict[str, Any], server_pid: int | None) -> dict[str, Any]:
    arrivals: dict[tuple[str, int], list[float]] = defaultdict(list)
    subscribers: list[dict[str, str]] = plan["subscribers"]
    per_kit: dict[str, int] = defaultdict(int)
    for s in subscribers:
        per_kit[s["kit"]] += 1
    measure_memory = bool(plan.get("measure_memory")) and server_pid is not None
    rss_before = rss_kib(server_pid) if measure_memory and server_pid else 0
    subs: list[Subscription] = []
    limit = asyncio.Semaphore(CONNECT_PARALLEL)

    # "ports": subscribers take turns over several instances (the writer uses ``port``), so
    # every event but a share of them crosses instances over the bus.
    ports = [int(p) for p in plan.get("ports", [port])]

    async def open_one(index: int, s: dict[str, str]) -> None:
        async with limit:
            target = ports[index % len(ports)]
            subs.append(await subscribe(target, s["kit"], s["token"], arrivals))

    began = time.perf_counter()
    writer = Writer(port)
    sent: dict[tuple[str, int], float] = {}
    write_latencies: list[float] = []
    write_failures = 0
    result: dict[str, Any] = {}
    try:
        await asyncio.gather(*(open_one(i, s) for i, s in enumerate(subscribers)))
        connect_seconds = time.perf_counter() - began
        await asyncio.sleep(float(plan.get("idle", 2.0)))  # idle: presence settles
        rss_after = rss_kib(server_pid) if measure_memory and server_pid else 0
        arrivals.clear()  # presence churn and snapshots are not what we time
        writers: list[dict[str, str]] = plan["writers"]
        interval = float(plan["interval"])
        deadline = time.perf_counter() + float(plan["seconds"])
        n = 0
        last: dict[str, int] = {}
        failures: dict[str, int] = {}
        while time.perf_counter() < deadline:
            w = writers[n % len(writers)]
            value = 100 + (n // len(writers)) % 100  # each writer's value changes every round
            n += 1
            start = time.perf_counter()
            status, version = await writer.patch(w["kit"], w["token"], w["field"], value)
            write_latencies.append(time.perf_counter() - start)
            if status != 200 or version is None:
                write_failures += 1
                failures[str(status)] = failures.get(str(status), 0) + 1
            elif version > last.get(w["kit"], 0):  # a write that changed nothing has no event
                last[w["kit"]] = version
                sent[(w["kit"], version)] = start
            await asyncio.sleep(max(0.0, start + interval - time.perf_counter()))
        await asyncio.sleep(min(1.0, interval * 20))  # stragglers
        latencies: list[float] = []
        expected = 0
        for (kit, version), at in sent.items():
            expected += per_kit[kit]
            latencies.extend(t - at for t in arrivals.get((kit, version), []))
        result = {
            "instances": len(ports),
            "subscribers": len(subscribers),
            "kits": len(per_kit),
            "connected": len(subs),
            "connect_seconds": round(connect_seconds, 3),
            "writes": len(sent),
            "write_failures": write_failures,
            "write_failure_statuses": failures,
            "deliveries_expected": expected,
            "deliveries": len(latencies),
            "latency": from_samples(
                latencies, seconds=float(plan["seconds"]), clients=len(subscribers)
            ),
            "write_latency": from_samples(
                write_latencies, seconds=float(plan["seconds"]), clients=1
            ),
        }
        if measure_memory:
            result["rss_before_kib"] = rss_before
            result["rss_after_kib"] = rss_after
            result["per_connection_kib"] = round((rss_after - rss_before) / len(subs), 2)
    finally:
        await writer.close()
        for sub in subs:
            if sub.transport is not None:
                sub.transport.close()
        await asyncio.sleep(0.2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--server-pid", type=int)
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    result = asyncio.run(run(args.port, plan, args.server_pid))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
