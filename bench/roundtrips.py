"""Count what one GET and one PATCH send to PostgreSQL and Redis (a diagnostic, not a benchmark).

Starts a server like the bench does, on two fresh databases with ``log_statement = 'all'`` set
on them only, and, around each request, reads the new lines of the PostgreSQL server log and
runs ``redis-cli MONITOR`` (filtered by the run's key prefix). Needs a local PostgreSQL whose
log file is readable (``--log``, Debian's default path below) and ``redis-cli``.

    python -m bench.roundtrips [--log /var/log/postgresql/postgresql-15-main.log]
                               [--env audit_reads=false …]

Statements are what the log shows: SQLAlchemy's pre-ping also sends an empty query (``;``)
between its BEGIN and ROLLBACK, which PostgreSQL does not log; Redis commands run inside a
script (EVALSHA) are listed by MONITOR too but cost no round trip of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg

from bench import infra, runner

DEFAULT_LOG = Path("/var/log/postgresql/postgresql-15-main.log")


async def _log_statements(databases: list[str]) -> None:
    conn = await asyncpg.connect(infra.PG_ADMIN_DSN)
    try:
        for db in databases:
            await conn.execute(f"ALTER DATABASE \"{db}\" SET log_statement = 'all'")
    finally:
        await conn.close()


def count(log: Path, data_db: str, key_db: str, prefix: str, call: Callable[[], int]) -> str:
    monitor = subprocess.Popen(
        ["redis-cli", "-h", "127.0.0.1", "MONITOR"], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.3)
        position = log.stat().st_size
        status = call()
        time.sleep(0.5)
    finally:
        monitor.terminate()
    redis_lines = [line for line in monitor.communicate()[0].splitlines() if prefix in line]
    lines = log.read_bytes()[position:].decode(errors="replace").splitlines()
    statements = [line for line in lines if "LOG:  statement:" in line or "LOG:  execute" in line]
    data = [line for line in statements if f"@{data_db} " in line]
    keys = [line for line in statements if f"@{key_db} " in line]
    direct = [line for line in redis_lines if "lua]" not in line]  # not run inside a script
    # The rate limiter's reconciliation runs on its own clock, not per request (unless
    # HEALTHINFO_RATE_LIMIT_SYNC_MS=0): listed apart.
    # (its keys end in a window's number; the exact mode's in ":previous" / ":current").
    reconciliations = [
        line
        for line in direct
        if ":ratelimit:" in line and ":current" not in line and '"EVALSHA"' in line.upper()
    ]
    direct = [line for line in direct if line not in reconciliations]
    scripts = [line for line in direct if '"EVALSHA"' in line.upper()]
    out = [
        f"status {status}: {len(data)} statements on the data database, {len(keys)} on the "
        f"key store; Redis: {len(direct)} client commands ({len(scripts)} of them scripts)"
        + (
            f", plus {len(reconciliations)} rate-limit reconciliations in the window"
            if reconciliations
            else ""
        )
    ]
    out += ["    " + line.split("LOG:  ", 1)[1][:110] for line in data + keys]
    out += ["    redis " + line.split('"', 1)[1][:100] for line in direct]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG)
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="server settings"
    )
    args = parser.parse_args()
    if shutil.which("redis-cli") is None or not args.log.exists():
        raise SystemExit("needs redis-cli and a readable PostgreSQL log (--log)")
    data_db, data_url = asyncio.run(infra.create_database())
    key_db, key_url = asyncio.run(infra.create_database())
    asyncio.run(_log_statements([data_db, key_db]))
    work = Path(tempfile.mkdtemp(prefix="healthinfo-roundtrips-"))
    (work / "data").mkdir()
    prefix = "healthinfo-bench-roundtrips:"
    bench = runner.Bench(runner.Options(), work, data_url, key_url, prefix)
    try:
        overrides = dict(item.split("=", 1) for item in args.env)
        with bench.server("roundtrips", **overrides) as (_, _url, api):
            api.seed(["K1"])
            api.read("K1")
            patch_headers = {**api.owner, "Content-Type": "application/merge-patch+json"}

            def get() -> int:
                return api.http.get("/v1/kits/K1/health-information", headers=api.owner).status_code

            version = 1

            def patch() -> int:
                nonlocal version
                body = {"answers": {"heightCm": 100 + version % 100}, "baseVersion": version}
                path = "/v1/kits/K1/health-information"
                response = api.http.patch(path, json=body, headers=patch_headers)
                version = int(response.headers.get("etag", '"0"').strip('"'))
                return response.status_code

            get()
            patch()  # warm: statements prepared, cache filled
            print("GET (cache hit)\n" + count(args.log, data_db, key_db, prefix, get))
            print("PATCH (baseVersion)\n" + count(args.log, data_db, key_db, prefix, patch))
    finally:
        infra.tear_down(bench.processes, [data_db, key_db], prefix, work)


if __name__ == "__main__":
    main()
