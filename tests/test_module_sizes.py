"""Modules split along their seams: no product module over 400 lines unless its docstring says why."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analysis", "dashboard", "db", "entropy_dash", "ingest", "models", "plots", "reports")
LIMIT = 400
#: how a module's docstring states its reason for being longer (e.g. "longer than 400 lines because …")
REASON = "lines because"


def test_no_product_module_is_over_400_lines_without_a_reason():
    modules = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(modules) > 50  # the packages were found
    long = {}
    for path in modules:
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > LIMIT and REASON not in (ast.get_docstring(ast.parse(text)) or ""):
            long[str(path.relative_to(ROOT))] = lines
    assert long == {}, f"over {LIMIT} lines with no '{REASON} …' in the module docstring: {long}"

