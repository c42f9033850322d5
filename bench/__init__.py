"""wsgate's benchmark suite: wsgate side by side with nginx, HAProxy, Caddy and node
http-proxy, driven by a C load generator and a C echo backend (bench/loadgen).

Run it with `python -m bench` from the project root (see bench/README.md). This
package is a tool, not part of the wsgate library: nothing in src/ imports it.
"""
