"""Ceiling for a write: the write transaction issued directly through asyncpg, committed.

Each client owns one kit (as in the PATCH scenario); the clients share a pool of at most 30
connections (the service's default pool: 10 + 20 overflow). Each loops:

* ``min``: ``UPDATE health_information … WHERE kit_id = $k AND version = $seen`` + ``INSERT``
  revision + ``INSERT`` audit event, in one transaction (BEGIN … COMMIT, a durable commit);
* ``full``: the statements the service issues for a PATCH, in the same order: the access
  query, the current row, the conditional UPDATE, the revision, and the audit event appended
  to the kit's hash chain in one statement (the head's upsert, hashing in SQL, feeding the
  event's INSERT: audit/chain.py);
* ``min_ping``: ``min`` preceded by what SQLAlchemy's ``pool_pre_ping`` does on every pool
  checkout with asyncpg (``BEGIN``; ``;``; ``ROLLBACK``): the price of pre-ping.

    python -m bench.sql_load --dsn DSN --prefix P --clients N --seconds S --variant min|full
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from bench.measure import from_samples

ACCESS = """
SELECT kits.owner_id, member.role, hi.version, hi.created_at
FROM kits
LEFT OUTER JOIN kit_members AS member ON member.kit_id = kits.kit_id AND member.user_id = $1
LEFT OUTER JOIN health_information AS hi ON hi.kit_id = kits.kit_id
WHERE kits.kit_id = $2
"""
CURRENT = "SELECT * FROM health_information WHERE kit_id = $1"
UPDATE = """
UPDATE health_information
SET answers = $1, field_versions = $2::json, version = $3, updated_at = $4, updated_by = $5
WHERE kit_id = $6 AND version = $7
"""
REVISION = """
INSERT INTO revisions (kit_id, version, status, answers, changed, at, by, channel, request_id)
VALUES ($1, $2, 'in-progress', $3, $4::json, $5, $6, 'rest', $7)
"""
APPEND = """
WITH head AS (
  INSERT INTO audit_chain_heads (kit_id, prev_hash, last_hash, length)
  VALUES ($1, $2::text, encode(sha256(convert_to($2::text, 'UTF8') || $3::bytea), 'hex'), 1)
  ON CONFLICT (kit_id) DO UPDATE SET
    prev_hash = audit_chain_heads.last_hash,
    last_hash = encode(sha256(convert_to(audit_chain_heads.last_hash, 'UTF8') || $3::bytea), 'hex'),
    length = audit_chain_heads.length + 1
  RETURNING prev_hash, last_hash
)
INSERT INTO audit_events (event_id, at, kit_id, actor, action, channel, request_id,
  version_before, version_after, changed, outcome, client_address, user_agent, reason,
  prev_hash, hash)
SELECT $4, $5, $1, $6, 'health-information.save', 'rest', $7, $8, $9, $10::json, 'ok',
  '127.0.0.1', 'bench', NULL, head.prev_hash, head.last_hash
FROM head
"""
AUDIT = """
INSERT INTO audit_events (event_id, at, kit_id, actor, action, channel, request_id,
  version_before, version_after, changed, outcome, client_address, user_agent, reason,
  prev_hash, hash)
VALUES ($1, $2, $3, $4, 'health-information.save', 'rest', $5, $6, $7, $8::json, 'ok',
  '127.0.0.1', 'bench', NULL, $9, $10)
"""
GENESIS = "0" * 64


class Client:
    def __init__(self, pool: asyncpg.Pool, kit_id: str, user: str, variant: str) -> None:
        self.pool = pool
        self.kit_id = kit_id
        self.user = user
        self.variant = variant
        self.version = 0
        self.answers = ""
        self.field_versions: dict[str, int] = {}
        self.n = 0

    async def load(self) -> None:
        row = await self.pool.fetchrow(CURRENT, self.kit_id)
        if row is None:
            raise SystemExit(f"kit {self.kit_id} has no health information")
        self.version = row["version"]
        self.answers = row["answers"]  # opaque (the service encrypts): written back as it is
        self.field_versions = json.loads(row["field_versions"])

    async def write(self) -> None:
        async with self.pool.acquire() as conn:
            if self.variant == "min_ping":  # what SQLAlchemy's pool_pre_ping does per checkout
                ping = conn.transaction()
                await ping.start()
                try:
                    await conn.fetchrow(";")
                finally:
                    await ping.rollback()
            await self._write(conn)

    async def _write(self, conn: asyncpg.Connection) -> None:
        self.n += 1
        kit = self.kit_id
        now = datetime.now(UTC)
        request_id = str(uuid.uuid4())
        async with conn.transaction():
            if self.variant == "full":
                await conn.fetchrow(ACCESS, self.user, kit)
                await conn.fetchrow(CURRENT, kit)
            new = self.version + 1
            self.field_versions["heightCm"] = new
            answers = self.answers
            status = await conn.execute(
                UPDATE,
                answers,
                json.dumps(self.field_versions),
                new,
                now,
                self.user,
                kit,
                self.version,
            )
            if status != "UPDATE 1":
                raise RuntimeError(f"lost the optimistic lock on {kit}: {status}")
            await conn.execute(
                REVISION, kit, new, answers, '["heightCm"]', now, self.user, request_id
            )
            event_id = str(uuid.uuid4())
            if self.variant == "full":
                canonical = json.dumps([event_id, request_id, kit, new]).encode()
                await conn.execute(
                    APPEND,
                    kit,
                    GENESIS,
                    canonical,
                    event_id,
                    now,
                    self.user,
                    request_id,
                    self.version,
                    new,
                    '["heightCm"]',
                )
                self.version = new
                return
            prev = GENESIS
            link = hashlib.sha256((prev + event_id + request_id).encode()).hexdigest()
            await conn.execute(
                AUDIT,
                event_id,
                now,
                kit,
                self.user,
                request_id,
                self.version,
                new,
                '["heightCm"]',
                prev,
                link,
            )
        self.version = new


async def run(
    dsn: str,
    prefix: str,
    user: str,
    clients: int,
    seconds: float,
    variant: str,
    connections: int,
) -> dict[str, object]:
    size = min(clients, connections)
    pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size)
    latencies: list[float] = []
    errors = 0
    try:
        workers = [Client(pool, f"{prefix}{i + 1}", user, variant) for i in range(clients)]
        for worker in workers:
            await worker.load()
        deadline = time.perf_counter() + seconds

        async def loop(client: Client) -> None:
            nonlocal errors
            while (start := time.perf_counter()) < deadline:
                try:
                    await client.write()
                except (asyncpg.PostgresError, RuntimeError):
                    errors += 1
                    await client.load()
                    continue
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(loop(w) for w in workers))
        elapsed = time.perf_counter() - began
    finally:
        await pool.close()
    return from_samples(
        latencies, seconds=elapsed, clients=clients, errors=errors, extra={"connections": size}
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--variant", choices=["min", "min_ping", "full"], default="min")
    parser.add_argument(
        "--connections", type=int, default=30, help="at most (the service's pool: 10 + 20)"
    )
    args = parser.parse_args()
    result = asyncio.run(
        run(
            args.dsn,
            args.prefix,
            args.user,
            args.clients,
            args.seconds,
            args.variant,
            args.connections,
        )
    )
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
