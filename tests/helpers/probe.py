"""`wsgate probe` run as a user runs it (the installed console script, a subprocess),
for the probe's integration tests against backends, nginx and wsgate.

    rc, out = probe(url, "--count", "3")          # exit status, stdout + stderr
    rc, steps = probe_json(url, "--idle", "2")    # --json: one dict per step, result last

`UPGRADE_CONF` is the usual WebSocket location (HTTP/1.1, Upgrade passed, Connection
"upgrade") with `{{read_timeout}}` as proxy_read_timeout, for nginx_server or
wsgate_server with port=, backend= and read_timeout=.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

WSGATE = str(pathlib.Path(sys.executable).with_name("wsgate"))

UPGRADE_CONF = """events {}
http {
    server {
        listen 127.0.0.1:{{port}};
        location / {
            proxy_pass http://127.0.0.1:{{backend}};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout {{read_timeout}};
        }
    }
}
"""


def probe(*args: str, stdin: str | None = None, timeout: float = 40) -> tuple[int, str]:
    """Run `wsgate probe ARGS`; stdin is `stdin` (empty when None: not a TTY)."""
    done = subprocess.run([WSGATE, "probe", *args], capture_output=True, text=True,
                          input=stdin if stdin is not None else "", timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def probe_json(*args: str, stdin: str | None = None,
               timeout: float = 40) -> tuple[int, list[dict[str, object]]]:
    """`probe` with --json: the steps, parsed; the last must be the result."""
    rc, out = probe(*args, "--json", stdin=stdin, timeout=timeout)
    steps = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert steps and steps[-1]["step"] == "result", out
    return rc, steps
