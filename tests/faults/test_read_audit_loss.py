"""The loss window of batched read auditing, measured: SIGKILL a server under read load.

A private ``healthinfo serve`` (tests/support/server.py) on each backend; 16 readers GET four
kits while two writers PATCH them; the server is SIGKILLed in the middle of the load (no
shutdown, no flush). Then, from the database:

* writes: every acknowledged write has its audit event (it is in the write's transaction): 0 lost;
* reads: the answered reads (200, by request id) without an event are the loss. The test prints
  the count and the loss window (how long before the kill the oldest lost read was answered)
  and asserts the documented bound (docs/security.md, "Reads and the loss window"): at most
  ``HEALTHINFO_AUDIT_READ_MAX_PENDING`` events, all answered within the batch window plus one
  batch write before the kill (``WINDOW_SLACK_SECONDS``: a loaded, shared test machine);
* every chain still verifies (``healthinfo audit verify``): a batch commits whole or not at all.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx

from tests.support.read_audit import (
    READ,
    SAVE,
    Load,
    create_kit,
    read_loop,
    stored_request_ids,
    verify_chain,
    write_loop,
)
from tests.support.server import ServerProcess

BATCH_MS = 50
BATCH_SIZE = 200
MAX_PENDING = 1000
READERS_PER_KIT = 4
KITS = 4
LOAD_SECONDS = 3.0
WINDOW_SLACK_SECONDS = 3.0  # one batch's transaction on a loaded, shared 2-core machine


async def test_sigkill_under_read_load_loses_at_most_the_bounded_window_of_read_events(
    database_url: str, tmp_path: Path
) -> None:
    server = ServerProcess(
        database_url=database_url,
        data_dir=tmp_path,
        extra_env={
            "HEALTHINFO_AUDIT_READS": "batched",
            "HEALTHINFO_AUDIT_READ_BATCH_MS": str(BATCH_MS),
            "HEALTHINFO_AUDIT_READ_BATCH_SIZE": str(BATCH_SIZE),
            "HEALTHINFO_AUDIT_READ_MAX_PENDING": str(MAX_PENDING),
            "HEALTHINFO_RATE_LIMIT_ENABLED": "false",
        },
    )
    owner = f"owner-{uuid.uuid4().hex[:8]}"
    kits = [f"KIT-{uuid.uuid4().hex[:12]}" for _ in range(KITS)]
    load, stop = Load(), asyncio.Event()
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            for kit in kits:
                await create_kit(client, kit, owner)
            tasks = [
                *(
                    asyncio.create_task(read_loop(client, kit, owner, load, stop))
                    for kit in kits
                    for _ in range(READERS_PER_KIT)
                ),
                *(
                    asyncio.create_task(write_loop(client, kit, owner, load, stop))
                    for kit in kits[:2]
                ),
            ]
            await asyncio.sleep(LOAD_SECONDS)
            killed_at = time.monotonic()
            server.kill()  # SIGKILL mid-load: whatever is queued in the process is gone
            stop.set()
            await asyncio.gather(*tasks)
        answered = {rid: at for rid, at in load.reads.items() if at <= killed_at}
        stored_reads = await stored_request_ids(database_url, kits, READ)
        stored_writes = await stored_request_ids(database_url, kits, SAVE)
        lost = {rid: at for rid, at in answered.items() if rid not in stored_reads}
        window = killed_at - min(lost.values()) if lost else 0.0
        figures = {
            "reads_answered": len(answered),
            "read_events_stored": len(stored_reads & set(answered)),
            "read_events_lost": len(lost),
            "loss_window_ms": round(window * 1000, 1),
            "bound_events": MAX_PENDING,
            "bound_window_ms": BATCH_MS + WINDOW_SLACK_SECONDS * 1000,
            "writes_acknowledged": len(load.writes),
            "write_events_lost": len(load.writes - stored_writes),
        }
        print("read-audit loss on SIGKILL:", json.dumps(figures))
        (tmp_path / "read-audit-loss.json").write_text(json.dumps(figures))

        assert len(answered) > 30, "the load did not get going"
        assert load.writes, "no write was acknowledged"
        assert load.writes <= stored_writes  # writes' audit is in the write's transaction
        assert len(lost) <= MAX_PENDING
        assert window <= BATCH_MS / 1000 + WINDOW_SLACK_SECONDS
        server.start(timeout=120)  # the restarted server is fine with what the kill left
        for kit in kits:
            verified = verify_chain(server, kit)
            assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        server.stop()
