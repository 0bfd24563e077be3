"""docs/quickstart.md works: its commands run, in order, and print what the page shows.

The page's ``sh`` blocks run as one bash script from the repository's root, as a reader pastes
them; a block under ``<!-- background: ready when "TEXT" -->`` is a terminal of its own (the
server, the event stream, the lab), started in the background, and the script goes on once
its output shows TEXT. The ``text`` block after a command block is what it prints: each of its
lines must match a line of the real output, in order (``…`` stands for anything; other lines
may come in between, such as ``: ping``). Only the ports (8000, 9000) and the data directory
are replaced, by ones of this test's own. SQLite only: the page runs the default setup.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.server import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
DATA_DIR = "/tmp/healthinfo-quickstart"  # the page's data directory, replaced below
BACKGROUND = re.compile(r'<!--\s*background:\s*ready when "([^"]+)"\s*-->')
FENCE = re.compile(r"^```(\w*)\s*$")
SCRIPT_SECONDS = 240
BACKGROUND_SECONDS = 60


@dataclass
class Block:
    code: str
    ready_when: str | None = None
    expected: list[str] | None = None


def blocks(markdown: str) -> list[Block]:
    """The ``sh`` blocks, each with its background marker and the ``text`` block after it."""
    found: list[Block] = []
    lines = markdown.splitlines()
    index, marker = 0, None
    while index < len(lines):
        line = lines[index]
        background = BACKGROUND.search(line)
        if background:
            marker = background.group(1)
        fence = FENCE.match(line)
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        body = lines[index + 1 : end]
        if fence.group(1) == "sh":
            found.append(Block("\n".join(body), ready_when=marker))
        elif fence.group(1) == "text" and found and found[-1].expected is None:
            found[-1].expected = [text for text in body if text.strip()]
        marker = None
        index = end + 1
    return found


def matches(expected: str, actual: str) -> bool:
    pattern = ".*?".join(re.escape(piece) for piece in expected.strip().split("…"))
    return re.fullmatch(pattern, actual.strip()) is not None


def unmatched(expected: list[str], actual: list[str]) -> list[str]:
    """The expected lines not found in ``actual`` in order (empty when all are)."""
    position = 0
    for number, line in enumerate(expected):
        while position < len(actual) and not matches(line, actual[position]):
            position += 1
        if position == len(actual):
            return expected[number:]
        position += 1
    return []


WAIT_FOR = """
wait_for() {  # wait_for FILE TEXT: until FILE holds TEXT
  local deadline=$((SECONDS + {seconds}))
  until grep -qF -- "$2" "$1" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "timed out waiting for '$2' in $1" >&2; exit 1; fi
    sleep 0.1
  done
}
""".replace("{seconds}", str(BACKGROUND_SECONDS))


def script(page: list[Block], out: Path, pids: Path) -> str:
    parts = ["set -euo pipefail", "set -m", f"cd {ROOT}", WAIT_FOR]
    for number, block in enumerate(page):
        output = out / f"block-{number}.txt"
        if block.ready_when is None:
            parts.append(f"{{\n{block.code}\n}} > {output} 2>&1")
        else:
            parts.append(f"{{\n{block.code}\n}} > {output} 2>&1 &")
            parts.append(f"echo $! >> {pids}")
            parts.append(f"wait_for {output} {quote(block.ready_when)}")
    return "\n".join(parts) + "\n"


def quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def stop_background(pids: Path) -> None:
    if not pids.exists():
        return
    groups = [int(pid) for pid in pids.read_text().split()]
    for group in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
    for group in groups:
        for _ in range(100):
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(group, signal.SIGKILL)


def quickstart_page(data_dir: Path) -> list[Block]:
    text = QUICKSTART.read_text("utf-8")
    text = re.sub(r"\b8000\b", str(free_port()), text)
    text = re.sub(r"\b9000\b", str(free_port()), text)
    return blocks(text.replace(DATA_DIR, str(data_dir)))


def clean_environment() -> dict[str, str]:
    """The caller's environment without HEALTHINFO_* settings: the page sets what it needs."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HEALTHINFO_")}


def output_of(out: Path, number: int) -> list[str]:
    path = out / f"block-{number}.txt"
    return path.read_text("utf-8", errors="replace").splitlines() if path.exists() else []


def wait_for_expected(out: Path, number: int, expected: list[str]) -> None:
    """A background terminal's last lines may come a moment after the script ended."""
    for _ in range(BACKGROUND_SECONDS * 10):
        if not unmatched(expected, output_of(out, number)):
            return
        time.sleep(0.1)


def test_the_page_has_the_steps_the_walk_through_promises() -> None:
    page = blocks(QUICKSTART.read_text("utf-8"))
    code = "\n".join(block.code for block in page)
    for step in (
        "healthinfo token",
        "If-Match",
        "baseVersion",
        "/events",
        "/submit",
        "audit-events",
    ):
        assert step in code
    assert [block.ready_when for block in page if block.ready_when] == [
        "Application startup complete",
        "event: snapshot",
        "lab listening",
    ]
    assert all(block.expected for block in page[3:] if block.ready_when is None)


def test_every_command_of_the_quickstart_prints_what_the_page_shows(tmp_path: Path) -> None:
    data_dir, out = tmp_path / "data", tmp_path / "out"
    out.mkdir()
    pids = tmp_path / "pids"
    page = quickstart_page(data_dir)
    bash = subprocess.Popen(
        ["bash", "-c", script(page, out, pids)],
        env=clean_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        stdout, _ = bash.communicate(timeout=SCRIPT_SECONDS)
        for number, block in enumerate(page):
            if block.ready_when is not None and block.expected:
                wait_for_expected(out, number, block.expected)
    finally:
        if bash.poll() is None:
            bash.kill()
        stop_background(pids)
    failures = []
    for number, block in enumerate(page):
        missing = unmatched(block.expected or [], output_of(out, number))
        if missing:
            shown = "\n".join(output_of(out, number)[-30:])
            failures.append(f"block {number}:\n{block.code}\nmissing {missing}\noutput:\n{shown}")
    assert bash.returncode == 0, stdout.decode(errors="replace") + "\n\n".join(failures)
    assert failures == [], "\n\n".join(failures)
    assert (data_dir / "jwt-secret").exists()
