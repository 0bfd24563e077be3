"""Which package may import which: read from the source with ``ast``, every import counted
(module level, inside functions, ``TYPE_CHECKING`` blocks and relative imports alike)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "healthinfo"


def imported_modules(path: Path, *, root: Path = SRC) -> set[str]:
    """Every ``healthinfo…`` module ``path`` (under ``root``, the healthinfo package) imports,
    relative imports resolved."""
    package = ".".join(("healthinfo", *path.relative_to(root).with_suffix("").parts[:-1]))
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "healthinfo" or name.startswith("healthinfo.")}


def top_packages(package: str) -> dict[str, set[str]]:
    """For each module of ``healthinfo.<package>``: the top-level healthinfo packages it
    imports (``healthinfo.api.middleware`` counts as ``api``)."""
    result: dict[str, set[str]] = {}
    for path in sorted((SRC / package).rglob("*.py")):
        tops = {name.split(".")[1] for name in imported_modules(path) if "." in name}
        result[str(path.relative_to(SRC))] = tops - {package}
    return result


def test_the_rule_reader_counts_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function and a relative import both count."""
    module = tmp_path / "infra" / "probe.py"
    module.parent.mkdir()
    module.write_text("from . import metrics\n\ndef f():\n    from healthinfo.api import x\n")
    found = imported_modules(module, root=tmp_path)
    assert {"healthinfo.infra.metrics", "healthinfo.api.x"} <= found


def test_infrastructure_never_imports_the_api() -> None:
    """infra/ is below the API: an import back (``infra.logging`` reading the request id from
    ``api.middleware``) made ``api.middleware → api.problems → infra.logging → api.middleware``
    a circle."""
    offending = {module: tops for module, tops in top_packages("infra").items() if "api" in tops}
    assert offending == {}


DOMAIN_PACKAGES = frozenset(
    {
        "api",
        "audit",
        "auth",
        "compliance",
        "fhir",
        "forwarding",
        "health_information",
        "idempotency",
        "kits",
        "legacy",
        "questionnaires",
        "realtime",
    }
)


@pytest.mark.parametrize("package", ["replication", "common"])
def test_replication_and_common_depend_on_no_domain_package(package: str) -> None:
    """The read path's replication code gets what it needs from the domains through
    ``common`` (action names, protocols), passed in by the composition root; ``common`` itself
    may know nothing above it but the actor it carries in a request context."""
    allowed = {"auth"} if package == "common" else set()
    offending = {
        module: sorted(tops & DOMAIN_PACKAGES - allowed)
        for module, tops in top_packages(package).items()
        if tops & DOMAIN_PACKAGES - allowed
    }
    assert offending == {}
