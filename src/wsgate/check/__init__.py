"""`wsgate check`: find everything that breaks or weakens WebSockets in an nginx config.

Pure analysis: reads files, never starts a server, never touches the network (no
DNS: hosts are judged by their spelling). Layers, in the order they run:

    syntax.py      read each file, recovering after syntax errors
    validate.py    the project's validator (same table and wording as -t), recovering
    xref.py        nginx's after-parse checks (upstreams, proxy_pass hosts, variables)
    breakers.py    WS020-WS025: what stops a handshake
    weakeners.py   WS030-WS036: what makes WebSockets work badly, or not at all
    sticky.py      WS033, WS036: balancing in front of Socket.IO
    output.py      text (compiler style) and JSON

Rules and their ids: rules.py; documentation: docs/check-rules.md.
"""

from __future__ import annotations


from wsgate.check.analyze import check_file, check_paths, check_text
from wsgate.check.findings import ERROR, NOTE, WARNING, Finding, summary
from wsgate.check.rules import RULES, Rule

__all__ = ["check_file", "check_paths", "check_text", "Finding", "RULES", "Rule",
           "ERROR", "WARNING", "NOTE", "summary"]
