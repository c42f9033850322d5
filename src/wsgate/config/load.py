"""Files + includes + -g -> model or ConfigError; shared by -t, check and the runtime.

Path rules are nginx's: `-c` is relative to the prefix; include paths are relative
to the directory of the main config file (nginx's conf prefix); pid and log paths
are relative to the prefix. The default pid is prefix-relative `logs/nginx.pid`, as
an nginx built with --prefix has it (Debian's build uses /run/nginx.pid instead).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from wsgate.config import handlers  # noqa: F401  (registers the custom handlers)
from wsgate.config import lexer
from wsgate.config.build import Builder, full_name
from wsgate.config.directives import MAIN
from wsgate.config.lexer import COMMAND_LINE
from wsgate.config.merge import InitError, build_config
from wsgate.config.model import Config
from wsgate.errors import ConfigError

__all__ = ["load_config", "load_config_text", "config_files", "parse_file",
           "DEFAULT_PREFIX", "InitError"]

DEFAULT_PREFIX = "/usr/share/nginx/"
parse_file = lexer.parse_file


def _paths(path: str, prefix: str | None) -> tuple[str, str]:
    prefix = prefix if prefix is not None else DEFAULT_PREFIX
    prefix = os.path.abspath(prefix) + "/"
    return prefix, full_name(path, prefix)


def _builder(prefix: str, conf_file: str, resolve: Any, warn: Any) -> Builder:
    b = Builder(prefix=prefix, conf_prefix=os.path.dirname(conf_file) + "/", warn=warn)
    b.resolver = resolve
    return b


def _run(b: Builder, conf_file: str, stmts: list[lexer.Statement],
         globals_: str | None, default_error_log: str | None = None) -> Config:
    if globals_:
        b.walk(lexer.parse_text(globals_, COMMAND_LINE, param=True), MAIN, b.main)
    b.include_stack.append(os.path.realpath(conf_file))
    b.walk(stmts, MAIN, b.main)
    return build_config(b, conf_file, default_error_log)


def load_config(path: str, *, prefix: str | None = None, globals_: str | None = None,
                resolve: Callable[[str, int], list[str]] | None = None,
                warn: Callable[[ConfigError], None] | None = None,
                default_error_log: str | None = None) -> Config:
    """Load an nginx config file; `path` may be relative to `prefix` (-p/-c rules).

    `default_error_log` (a path relative to the prefix, or "stderr") is the error
    log used when the main level has no `error_log`: nginx's `-e` value, else its
    compiled-in default (`logs/error.log` when None). Errors nginx reports only
    after "syntax is ok" are raised as InitError (a ConfigError).
    """
    prefix, conf_file = _paths(path, prefix)
    b = _builder(prefix, conf_file, resolve, warn)
    b.files.append(conf_file)
    return _run(b, conf_file, lexer.parse_file(conf_file), globals_, default_error_log)


def load_config_text(text: str, *, name: str = "<string>", prefix: str | None = None,
                     **kw: Any) -> Config:
    """Load config text as if it were the file `name` (relative to prefix)."""
    prefix, conf_file = _paths(name, prefix)
    b = _builder(prefix, conf_file, kw.get("resolve"), kw.get("warn"))
    return _run(b, conf_file, lexer.parse_text(text, conf_file), kw.get("globals_"),
                kw.get("default_error_log"))


def config_files(path: str, *, prefix: str | None = None) -> list[tuple[str, str]]:
    """(abs path, text) of the main file and every included file, in -T order."""
    prefix, conf_file = _paths(path, prefix)
    b = _builder(prefix, conf_file, None, None)
    b.files.append(conf_file)
    try:
        _run(b, conf_file, lexer.parse_file(conf_file), None)
    except ConfigError:
        pass       # -T dumps only after a successful test; callers test first
    out = []
    for f in b.files:
        with open(f, "rb") as fh:
            out.append((f, lexer.decode(fh.read())))
    return out
