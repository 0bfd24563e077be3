"""Medplum's ``validateResource`` (npm ``@medplum/core``) run over resources from a test.

The Node project is tests/node/medplum/ (exact versions, committed package-lock.json); its
``node_modules`` is installed with ``npm ci`` the first time a test needs it. Without ``node``
or ``npm`` the test fails, saying so: like Chromium for the /demo tests, it is never skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[1] / "node" / "medplum"
SCRIPT = PROJECT / "validate.mjs"
# What the script needs from node_modules; a half-finished install lacks one of them.
INSTALLED = (
    PROJECT / "node_modules" / "@medplum" / "core" / "package.json",
    PROJECT / "node_modules" / "@medplum" / "definitions" / "package.json",
)
INSTALL_SECONDS = 300
VALIDATE_SECONDS = 120


class MedplumUnavailable(RuntimeError):
    """Node, npm or the Medplum packages are missing and could not be installed."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MedplumUnavailable(
            f"`{name}` is not on PATH: the Medplum validation test needs Node.js >= 20.19 and "
            "npm (Debian: apt-get install nodejs npm). It is not skipped."
        )
    return path


MIN_NODE = (20, 19)  # @medplum/core 4.5.2: engines node ^20.19.0 || >=22.12.0


def _check_version(node: str) -> None:
    found = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    parts = tuple(int(part) for part in found.lstrip("v").split(".")[:2] if part.isdigit())
    if parts < MIN_NODE:
        raise MedplumUnavailable(
            f"node {found or '(unknown version)'} is too old: @medplum/core 4.5.2 needs "
            "Node.js >= 20.19 (Debian 12's nodejs is 18; use NodeSource's 20 or newer)."
        )


def ensure_installed() -> str:
    """The path of ``node``, after ``npm ci`` of the project if its packages are missing."""
    node = _tool("node")
    _check_version(node)
    if all(path.is_file() for path in INSTALLED):
        return node
    npm = _tool("npm")
    result = subprocess.run(
        [npm, "ci", "--prefix", str(PROJECT), "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=INSTALL_SECONDS,
        check=False,
    )
    if result.returncode != 0 or not all(path.is_file() for path in INSTALLED):
        raise MedplumUnavailable(
            f"npm ci --prefix {PROJECT} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return node


@dataclass(frozen=True)
class Verdict:
    returncode: int
    output: str

    @property
    def failures(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("FAIL ")]


def validate(node: str, resources: list[Any], work_dir: Path) -> Verdict:
    """Run tests/node/medplum/validate.mjs over ``resources`` (written to a file in work_dir)."""
    path = work_dir / "medplum-resources.json"
    path.write_text(json.dumps(resources), encoding="utf-8")
    result = subprocess.run(
        [node, str(SCRIPT), str(path)],
        capture_output=True,
        text=True,
        timeout=VALIDATE_SECONDS,
        check=False,
        cwd=PROJECT,
    )
    return Verdict(result.returncode, result.stdout + result.stderr)
