"""The benchmarks under bench/ time things, so the tests do not run them; what they import from the project
(often inside functions, found by no linter) must still exist, or `make bench` fails half-way."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"analysis", "dashboard", "db", "entropy_dash", "ingest", "models", "reports", "tests"}


def project_imports(path: Path) -> list[tuple[str, str, int]]:
    """``(module, name, line)`` of every ``from <project module> import name`` in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
    return found


@pytest.mark.parametrize("path", sorted(ROOT.glob("bench/**/*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_what_a_benchmark_imports_from_the_project_exists(path):
    missing = []
    for module, name, line in project_imports(path):
        mod = importlib.import_module(module)
        if not hasattr(mod, name) and importlib.util.find_spec(f"{module}.{name}") is None:
            missing.append(f"{path.name}:{line}: {module}.{name}")
    assert missing == []


def test_the_check_finds_a_name_that_does_not_exist(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from analysis.pipeline import load_results\n")
    (module, name, line), = project_imports(bad)
    assert (module, name, line) == ("analysis.pipeline", "load_results", 2)
    assert not hasattr(importlib.import_module(module), name)
