"""Profile the server under load: py-spy on a ``healthinfo serve`` while wrk drives it.

    python -m bench.profile read|patch [--seconds 15] [--clients 4] [--gil] [--top 40]
                                       [--env KEY=VALUE …]

Starts a server like the bench does (fresh databases, own Redis prefix, everything cleaned up),
runs one wrk scenario against it while ``py-spy record`` samples it, and prints the server's
CPU time per response and the busiest frames (self and total). ``--env redis_url=redis://
127.0.0.1:9/0`` profiles the Redis-down path; ``--gil`` samples only while the GIL is held.
py-spy comes with the dev extras (``scripts/test`` and ``bench/run`` install them).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
from pathlib import Path

from bench import infra, report, runner


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["read", "patch"])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--gil", action="store_true")
    parser.add_argument("--top", type=int, default=40, help="how many frames to list")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    spy = runner._py_spy()
    if spy is None:
        raise SystemExit("py-spy not found: pip install py-spy")
    overrides = dict(item.split("=", 1) for item in args.env)
    runner.ensure_wrk()
    data_db, data_url = asyncio.run(infra.create_database())
    key_db, key_url = asyncio.run(infra.create_database())
    work = Path(tempfile.mkdtemp(prefix="healthinfo-profile-"))
    (work / "data").mkdir()
    prefix = "healthinfo-bench-profile:"
    bench = runner.Bench(runner.Options(read_kits=16), work, data_url, key_url, prefix)
    try:
        with bench.server("profiled", **overrides) as (proc, url, api):
            kits = [f"R{i}" for i in range(1, 17)]
            api.seed(kits)
            api.read_all(kits)
            c = args.clients
            if args.scenario == "patch":
                api.seed([f"P{i}" for i in range(1, c + 1)])
                wrk_args = [bench.owner_token, "P", "own", "1"]
            else:
                wrk_args = [bench.owner_token, "R", "16"]
            out = work / "profile.txt"
            argv = [spy, "record", "--nonblocking", "-r", "250", "-p", str(proc.pid)]
            argv += ["-d", str(args.seconds), "-f", "raw", "-o", str(out)]
            argv += ["--gil"] if args.gil else []
            recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            m = bench.wrk(
                args.scenario,
                url,
                c,
                wrk_args,
                seconds=args.seconds,
                one_thread_per_client=args.scenario == "patch",
            )
            recorder.wait(timeout=args.seconds + 30)
        print(
            f"{args.scenario} at {c} clients: {m['rps']}/s, p50 {m['p50_ms']} ms, server CPU "
            f"{m.get('server_cpu_ms_per_request')} ms per response, load {runner._loadavg()}"
        )
        summary = report.summarise_profile(out.read_text(), top=args.top)
        print(f"{summary['samples']} samples")
        for kind in ("self", "total"):
            for row in summary[kind]:
                print(f"  {kind:<5} {row['share'] * 100:5.1f} %  {row['frame'][:110]}")
    finally:
        infra.tear_down(bench.processes, [data_db, key_db], prefix, work)


if __name__ == "__main__":
    main()
