"""Dependencies are bounded, locked and installed from the lock; the wheel is complete.

A fresh clone must install exactly what CI tested: an unbounded dependency's new major release
once broke every clone overnight (sentry-sdk 3).
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _requirements(group: str | None) -> list[Requirement]:
    project = PYPROJECT["project"]
    lines = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return [Requirement(line) for line in lines]


def _pins(lock_file: str) -> dict[str, str]:
    """name -> version of the lock's entries that apply to this interpreter (markers evaluated)."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / lock_file).read_text().splitlines():
        if PIN.match(line):
            requirement = Requirement(line.split(" \\")[0])
            if requirement.marker is None or requirement.marker.evaluate():
                (spec,) = requirement.specifier
                pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def _upper_bound(requirement: Requirement) -> Version | None:
    uppers = [Version(s.version) for s in requirement.specifier if s.operator == "<"]
    return min(uppers) if uppers else None


@pytest.mark.parametrize("group", [None, "dev"], ids=["runtime", "dev"])
def test_every_dependency_has_a_lower_and_an_upper_bound(group: str | None) -> None:
    for requirement in _requirements(group):
        operators = {s.operator for s in requirement.specifier}
        assert ">=" in operators, f"{requirement.name} has no lower bound"
        assert "<" in operators, f"{requirement.name} is unbounded above"


@pytest.mark.parametrize("group", [None, "dev"], ids=["runtime", "dev"])
def test_upper_bounds_stop_below_the_next_major_release(group: str | None) -> None:
    """``<next major`` and no tighter: a tighter cap would silently hold back fixes."""
    for requirement in _requirements(group):
        lower = min(Version(s.version) for s in requirement.specifier if s.operator == ">=")
        upper = _upper_bound(requirement)
        assert upper is not None
        assert upper.minor == 0, f"{requirement.name}: the cap {upper} is not a major release"
        assert upper.major > lower.major or lower.major == 0, requirement.name


@pytest.mark.parametrize("lock_file", ["runtime.txt", "dev.txt", "bootstrap.txt"])
def test_every_locked_requirement_is_pinned_with_a_hash(lock_file: str) -> None:
    text = (ROOT / "requirements" / lock_file).read_text()
    entries = [block for block in re.split(r"\n(?=[A-Za-z0-9])", text) if PIN.match(block)]
    assert entries
    for entry in entries:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


@pytest.mark.parametrize("group", [None, "dev"], ids=["runtime", "dev"])
def test_the_lock_satisfies_pyproject(group: str | None) -> None:
    pins = _pins("runtime.txt" if group is None else "dev.txt")
    for requirement in _requirements(group):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in the lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} breaks {requirement}"
        )


def test_the_runtime_lock_is_the_dev_lock_minus_dev_tools() -> None:
    """The service runs with the versions the tests ran with."""
    runtime, dev = _pins("runtime.txt"), _pins("dev.txt")
    assert {name: dev.get(name) for name in runtime} == runtime


def test_the_test_environment_was_installed_from_the_lock() -> None:
    """scripts/venv.sh installs requirements/dev.txt: what runs here is what is locked."""
    for name, version in _pins("dev.txt").items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # a platform-marked requirement (e.g. colorama on Windows)
        assert Version(installed) == Version(version), f"{name} {installed} != lock {version}"


def test_the_exported_requirements_match_uv_lock() -> None:
    """requirements/*.txt are uv.lock's export: nobody edits one without the other."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.fail("uv is a dev dependency and must be installed in the test environment")
    for lock_file, extra in (("runtime.txt", []), ("dev.txt", ["--extra", "dev"])):
        exported = subprocess.run(
            [
                uv,
                "export",
                "--frozen",
                "--no-emit-project",
                "--no-dev",
                *extra,
                "--format",
                "requirements-txt",
                "--no-header",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        committed = (ROOT / "requirements" / lock_file).read_text()
        body = "\n".join(line for line in committed.splitlines() if not line.startswith("#"))
        want = "\n".join(line for line in exported.splitlines() if not line.startswith("#"))
        assert body.strip() == want.strip(), (
            f"requirements/{lock_file} is stale: scripts/upgrade-deps --export-only"
        )


@pytest.fixture(scope="module")
def wheel_metadata(tmp_path_factory: pytest.TempPathFactory) -> Message:
    """Build the wheel as `pip install .` would (the locked backend, no network)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("healthinfo-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name), policy=email.policy.compat32)


def test_the_wheel_names_its_license(wheel_metadata: Message) -> None:
    assert wheel_metadata["License-Expression"] == "LicenseRef-Proprietary"
    assert "LICENSE" in (wheel_metadata.get_all("License-File") or [])


def test_the_wheel_has_project_urls_and_classifiers(wheel_metadata: Message) -> None:
    urls = {value.split(",")[0] for value in wheel_metadata.get_all("Project-URL") or []}
    assert {"Homepage", "Documentation", "Repository"} <= urls
    classifiers = wheel_metadata.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Topic :: ") for c in classifiers)


def test_the_wheel_carries_the_bounded_requirements(wheel_metadata: Message) -> None:
    runtime = [
        Requirement(value)
        for value in wheel_metadata.get_all("Requires-Dist") or []
        if "extra ==" not in value
    ]
    assert {canonicalize_name(r.name) for r in runtime} == {
        canonicalize_name(r.name) for r in _requirements(None)
    }
    assert all(_upper_bound(r) is not None for r in runtime)
