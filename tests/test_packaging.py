"""`pip install .` ships every package, every package collab imports is declared, and the
README's commands install the versions the tests ran against (constraints.txt, the lock)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = "constraints.txt"

# The distributions whose private members collab uses (uvicorn's WebSocket and HTTP
# protocols, websockets' connection, h11's states): any new release may rename them.
PRIVATE_MEMBERS_USED = ("uvicorn", "websockets", "h11")


def test_every_package_is_listed_in_pyproject() -> None:
    listed = set(CONFIG["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "collab").rglob("__init__.py")
    }
    assert found <= listed, f"missing from pyproject.toml: {sorted(found - listed)}"


def declared(*extras: str) -> dict[str, Requirement]:
    """The requirements pyproject.toml declares (with `extras`), by canonical name."""
    project = CONFIG["project"]
    lines = project["dependencies"] + [
        line for extra in extras for line in project["optional-dependencies"][extra]
    ]
    return {canonicalize_name(Requirement(line).name): Requirement(line) for line in lines}


def locked() -> dict[str, Version]:
    """The versions constraints.txt pins, by canonical name (each line `name==version`)."""
    pins = {}
    for line in (REPO / LOCK).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{LOCK}: {line!r} is not a pin"
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def imported_distributions(folder: Path) -> dict[str, set[str]]:
    """The distributions that may provide each module the modules under `folder` import
    (absolute imports of modules neither in the standard library nor the project's own).
    A namespace such as `pycrdt` can be provided by several (pycrdt, pycrdt-store, ...)."""
    own = {"collab"} | {path.stem for path in REPO.glob("*/*.py")}
    modules = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    by_module = importlib.metadata.packages_distributions()
    return {
        module: {canonicalize_name(d) for d in by_module.get(module, [f"{module} (not installed)"])}
        for module in modules - own - set(sys.stdlib_module_names)
    }


def undeclared(imported: dict[str, set[str]], declared: set[str]) -> list[str]:
    """Modules none of whose distributions is declared."""
    return sorted(module for module, dists in imported.items() if not dists & declared)


def test_every_package_collab_imports_is_declared() -> None:
    missing = undeclared(imported_distributions(REPO / "collab"), set(declared()))
    assert not missing, f"imported by collab/ but not in dependencies: {missing}"


def test_every_package_the_tests_import_is_declared() -> None:
    missing = undeclared(imported_distributions(REPO / "tests"), set(declared("test")))
    assert not missing, f"imported by tests/ but not in the test extra: {missing}"


def test_the_lock_pins_every_declared_package_within_its_range() -> None:
    pins = locked()
    for name, requirement in declared("test", "bench").items():
        assert name in pins, f"{name} is declared but not pinned in {LOCK}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{LOCK} pins {name}=={pins[name]}, outside pyproject.toml's {requirement}"
        )


def test_packages_whose_private_members_are_used_are_bounded_above() -> None:
    requirements = declared()
    for name in PRIVATE_MEMBERS_USED:
        assert name in requirements, f"{name} is used but not declared"
        operators = {spec.operator for spec in requirements[name].specifier}
        assert "<" in operators, f"{requirements[name]}: no upper bound"


def test_the_readme_commands_install_from_the_lock_and_ci_runs_the_test_one() -> None:
    readme = (REPO / "README.md").read_text()
    serve, test = (
        block.split(" #")[0].strip() for block in re.findall(r"```sh\n(.*?)```", readme, re.S)[:2]
    )
    assert serve.startswith(f"pip install -c {LOCK} ") and serve.endswith("collab serve")
    assert test.startswith(f"pip install -c {LOCK} ") and "pytest" in test
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test in ci, ".ci/run does not run the README's test command as it is written"
