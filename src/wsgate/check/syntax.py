"""Reading a config file while recovering from syntax errors (nginx stops at one).

The project's lexer (wsgate.config.lexer) ends `parse_text` at the first syntax
error, as nginx does; its public `parse_recovering` skips past each error and reads
on. Every error is an error Statement (``error`` set) where it happened, exactly as
the lexer's own output looks, so the validator handles both the same way.

Errors it cannot recover from (an unterminated quote, end of file) still end the
file: there is nothing after them to read.
"""

from __future__ import annotations

from wsgate.config import lexer
from wsgate.config.lexer import Statement

__all__ = ["parse_recovering", "read_file", "MAX_ERRORS"]

MAX_ERRORS = 200


def read_file(path: str) -> list[Statement]:
    """Parse `path` with recovery; raises ConfigError if it cannot be read."""
    return parse_recovering(lexer.decode(lexer.read_bytes(path)), path)


def parse_recovering(text: str, file: str) -> list[Statement]:
    """Like lexer.parse_text, but reports every recoverable syntax error."""
    return lexer.parse_recovering(text, file, max_errors=MAX_ERRORS)
