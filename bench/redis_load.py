"""Ceiling for a cache hit: HMGET of the cached entry itself, by an asyncio client (redis-py).

The same library, command and payload as the service's cache lookup, in a process of its own:
what one Python event loop can get out of Redis, with nothing else per operation.

    python -m bench.redis_load --url URL --key KEY --clients N --seconds S
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import redis.asyncio as aioredis

from bench.measure import from_samples


async def run(url: str, key: str, clients: int, seconds: float) -> dict[str, object]:
    client = aioredis.Redis.from_url(url, max_connections=clients + 1)
    latencies: list[float] = []
    errors = 0
    try:
        if (await client.hmget(key, ["v", "d"]))[1] is None:
            raise SystemExit(f"no cache entry at {key}")
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while (start := time.perf_counter()) < deadline:
                try:
                    await client.hmget(key, ["v", "d"])
                except OSError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    finally:
        await client.aclose()
    return from_samples(latencies, seconds=elapsed, clients=clients, errors=errors)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.key, args.clients, args.seconds))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
