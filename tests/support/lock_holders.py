"""Who has a SQLite file open: the processes to suspect when a test meets ``database is locked``.

SQLite's write lock belongs to whichever connection holds it, in any process, and nothing in
the error says which. A failing test on SQLite adds this list to its report (``conftest``), so
that an intermittent lock in CI names its holder instead of leaving a ten-second timeout.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url


def processes_holding(path: Path) -> list[str]:
    """``pid: command line`` of each process with ``path`` (or its WAL/SHM files) open."""
    wanted = {str(path), f"{path}-wal", f"{path}-shm"}
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        if not _open_files(entry) & wanted:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        found.append(f"{entry.name}: {command.strip()[:300]}")
    return found


def _open_files(process: Path) -> set[str]:
    """What the process's descriptors point at; one closed while we look is skipped (the
    listing's own descriptor is one of them)."""
    targets: set[str] = set()
    try:
        descriptors = list((process / "fd").iterdir())
    except OSError:
        return targets  # ended meanwhile, or not ours to read
    for descriptor in descriptors:
        try:
            targets.add(os.readlink(descriptor))
        except OSError:
            continue
    return targets


def sqlite_path(database_url: str) -> Path | None:
    """The file behind a ``sqlite+aiosqlite:///…`` URL, or None for another backend."""
    if not database_url:
        return None
    parsed = make_url(database_url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)
