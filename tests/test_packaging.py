"""The wheel ships only the project's own namespaces: no generic top-level `experiments`
package in a user's environment, and nothing shipped imports it (so `valuate bench` works
from an installed wheel)."""

import ast
import pathlib
import tomllib

from setuptools import find_packages

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHIPPED_TOP = {"valuation", "metalearner", "valuate"}


def shipped_packages() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    return find_packages(where=str(ROOT), include=include)


def test_wheel_holds_only_the_project_namespaces():
    packages = shipped_packages()
    assert {p.split(".")[0] for p in packages} == SHIPPED_TOP
    assert "valuation.evaluate" in packages


def test_no_shipped_module_imports_experiments():
    offenders = []
    for top in SHIPPED_TOP:
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                if any(n.split(".")[0] == "experiments" for n in names):
                    offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
