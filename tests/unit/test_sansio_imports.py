"""The sans-IO cores must not import asyncio, sockets or anything that does I/O.

Checked statically over every module's imports, so a lazy import inside a function
is caught too.
"""

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[2] / "src" / "wsgate"
SANS_IO = ["config", "http", "websocket", "check"]
FORBIDDEN = {"asyncio", "socket", "selectors", "ssl", "uvloop", "threading",
             "subprocess", "wsgate.proxy", "wsgate.master", "wsgate.cli"}


def _imports(path: pathlib.Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _modules():
    for pkg in SANS_IO:
        yield from sorted((SRC / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(SRC)))
def test_sans_io_module_imports_no_io(path):
    bad = [(line, name) for line, name in _imports(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"{path.relative_to(SRC)} imports I/O modules: {bad}"


def test_sans_io_packages_exist():
    for pkg in SANS_IO:
        assert (SRC / pkg / "__init__.py").is_file()
