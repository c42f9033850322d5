#!/usr/bin/env bash
# Sets up what wsgate needs, idempotently: a virtual environment in .venv with the
# package installed in editable mode, and with "test" the Debian and npm packages the
# test suite drives (nginx-light for differential tests, node's ws for real backends).
# Usage: scripts/setup.sh [runtime|test]
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-runtime}
PY=${PYTHON:-python3}

log() { printf 'setup: %s\n' "$*" >&2; }

# --- Python ------------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($PY --version)"
    if ! $PY -m venv .venv 2>/dev/null; then
        # Debian splits venv/ensurepip into python3-venv.
        rm -rf .venv
        if [ "$(id -u)" = 0 ]; then
            log "installing python3-venv"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
        fi
        $PY -m venv .venv
    fi
fi
extras=""
[ "$what" = test ] && extras="[test]"
stamp=".venv/.installed-$what-$(cat pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    log "installing wsgate$extras into .venv"
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e ".$extras" >&2
    touch "$stamp"
fi

[ "$what" = test ] || exit 0

# --- Debian packages the tests drive -----------------------------------------------
need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# The bench's load generator (compiled by tests/integration/test_bench_quick.py) links
# libssl, and its TLS workloads make their certificate with the openssl command.
[ -f /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        log "need root to install: ${need_apt[*]} (or install them yourself)"; exit 1
    fi
    log "installing Debian packages: ${need_apt[*]}"
    # Keep Debian's maintainer scripts from starting a system nginx on port 80.
    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
        created_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
    [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
    # If something started nginx anyway, stop it: tests run their own instances.
    pkill -x nginx 2>/dev/null || true
fi

# --- node backends and apps (ws, vite, socket.io), pinned by their lockfiles ---------
for d in tests/node tests/node/vite-app tests/node/socketio-app; do
    if [ -f "$d/package-lock.json" ] && [ ! -f "$d/node_modules/.package-lock.json" ]; then
        log "installing node packages in $d (npm ci)"
        # npm 11 leaves other platforms' optional packages (rollup's) out of a lock it
        # writes, and `npm ci` then refuses it; `npm install` honours the same lock.
        (cd "$d" && { npm ci --silent --no-audit --no-fund >&2 2>/dev/null ||
                      npm install --silent --no-audit --no-fund >&2; })
    fi
done
