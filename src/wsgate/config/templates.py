"""Adapter to B's variables/maps modules (wsgate.config.variables, .maps).

Keeps the loader working while those modules are being written: when they are
absent, templates are kept as `RawTemplate` (source text only, never rendered) and
maps are recorded but not compiled. Once variables.py exists, the real classes are
used and every template is compiled and bound at load.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["RawTemplate", "new_table", "compile", "finalize", "map_builder", "available"]


def _module(name: str) -> Any:
    try:
        return importlib.import_module(f"wsgate.config.{name}")
    except ImportError:
        return None


@dataclass(frozen=True, slots=True)
class RawTemplate:
    """Source text of a template not compiled (variables module unavailable)."""

    source: str

    @property
    def is_static(self) -> bool:
        return "$" not in self.source


def available() -> bool:
    return _module("variables") is not None


def new_table() -> Any:
    mod = _module("variables")
    return mod.VariableTable() if mod is not None else None


def compile(text: str, table: Any, file: str | None = None, line: int | None = None) -> Any:
    mod = _module("variables")
    if mod is None or table is None:
        return RawTemplate(text)
    return mod.compile_template(text, table, file=file, line=line)


def finalize(table: Any) -> None:
    if table is not None:
        table.finalize()


def map_builder(source: Any, dest: str, table: Any, file: str, line: int) -> Any:
    mod = _module("maps")
    if mod is None or table is None:
        return None
    return mod.MapBuilder(source, dest, table, file=file, line=line)
