"""nginx's command line, flag for flag: `wsgate -t -T -q -c -p -e -g -s -v -V -h`.

Parsing follows nginx 1.22's `ngx_get_options` exactly: flags combine (`-tq`), a
value may be glued (`-cfile`) or the next argument (`-c file`), and every mistake is
nginx's message with `wsgate:` where nginx says `nginx:`. What follows parsing is
nginx's `main()` order: show version/help; open the startup error log (`-e`, stderr by
default, like Debian's build); work out prefix and config path; load the config; then
test (`-t`/`-T`), signal a running master (`-s`) or serve.

Paths, as nginx: `-c` relative to the prefix (`-p /x/ -c a.conf` is `/x/a.conf`, not
normalised), includes relative to the config file's directory (the loader's job),
`-e` relative to the prefix. wsgate's compiled-in equivalent of nginx's `--prefix` is
`/etc/wsgate/` when that directory exists, else the current directory; the default
config is `conf/nginx.conf` under the prefix, as in nginx's default build.

Nothing here lets a Python traceback reach the user: an unexpected exception is a
wsgate bug and is reported as `wsgate: [alert] ...` with exit status 1.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import ssl
import sys
from dataclasses import dataclass
from typing import Any, TypeGuard

from wsgate.proxy.resolve import resolve
from wsgate.errors import ConfigError
from wsgate.observe.errorlog import PROGRAM, ErrorLog
from wsgate.version import NGINX_COMPAT, __version__

DEFAULT_PREFIX_DIR = "/etc/wsgate/"
DEFAULT_CONF = "conf/nginx.conf"
DEFAULT_PID = "logs/nginx.pid"

# `-s NAME` -> the signal nginx sends (ngx_signals[]: stop TERM, quit QUIT, ...).
SIGNALS: dict[str, int] = {
    "stop": signal.SIGTERM,
    "quit": signal.SIGQUIT,
    "reopen": signal.SIGUSR1,
    "reload": signal.SIGHUP,
}


@dataclass(frozen=True)
class Module:
    """One nginx configure-time module, as `-V` spells it.

    `default` says whether nginx builds it unless told `--without-NAME`; `has` says
    whether wsgate implements it. A default module wsgate lacks prints
    `--without-NAME`; a non-default one it has prints `--with-NAME`.
    """

    name: str
    default: bool
    has: bool


# THE module list: flip `has` when a module lands (e.g. http_ssl_module).
MODULES: tuple[Module, ...] = (
    Module("http", True, True),
    Module("http-cache", True, False),
    Module("pcre", True, True),  # regex locations/maps/server_names via Python's re
    Module("http_charset_module", True, False),
    Module("http_gzip_module", True, False),
    Module("http_ssi_module", True, True),
    Module("http_userid_module", True, False),
    Module("http_access_module", True, False),
    Module("http_auth_basic_module", True, False),
    Module("http_mirror_module", True, False),
    Module("http_autoindex_module", True, False),
    Module("http_geo_module", True, False),
    Module("http_map_module", True, True),
    Module("http_split_clients_module", True, False),
    Module("http_referer_module", True, False),
    Module("http_rewrite_module", True, True),
    Module("http_proxy_module", True, True),
    Module("http_fastcgi_module", True, False),
    Module("http_uwsgi_module", True, False),
    Module("http_scgi_module", True, False),
    Module("http_grpc_module", True, False),
    Module("http_memcached_module", True, False),
    Module("http_limit_conn_module", True, False),
    Module("http_limit_req_module", True, False),
    Module("http_empty_gif_module", True, False),
    Module("http_browser_module", True, False),
    Module("http_upstream_hash_module", True, True),
    Module("http_upstream_ip_hash_module", True, True),
    Module("http_upstream_least_conn_module", True, True),
    Module("http_upstream_random_module", True, True),
    Module("http_upstream_keepalive_module", True, True),
    Module("http_upstream_zone_module", True, True),
    Module("http_ssl_module", False, True),
    Module("http_v2_module", False, False),
    Module("http_realip_module", False, False),
    Module("http_addition_module", False, False),
    Module("http_sub_module", False, False),
    Module("http_dav_module", False, False),
    Module("http_flv_module", False, False),
    Module("http_mp4_module", False, False),
    Module("http_gunzip_module", False, False),
    Module("http_gzip_static_module", False, False),
    Module("http_auth_request_module", False, False),
    Module("http_random_index_module", False, False),
    Module("http_secure_link_module", False, False),
    Module("http_slice_module", False, False),
    Module("http_stub_status_module", False, True),
    Module("mail", False, False),
    Module("stream", False, False),
)


class UsageError(Exception):
    """A command-line mistake; str() is nginx's message without the program name."""


@dataclass
class Options:
    """What `ngx_get_options` sets, named after nginx's globals."""

    show_version: bool = False
    show_help: bool = False
    show_configure: bool = False
    test_config: bool = False
    dump_config: bool = False
    quiet: bool = False
    prefix: str | None = None
    error_log: str | None = None  # "" means stderr, as nginx stores `-e stderr`
    conf_file: str | None = None
    conf_params: str | None = None
    signal: str | None = None


# Flags that take a value, with nginx's "requires ..." wording.
_VALUE_FLAGS = {"p": "directory name", "e": "file name", "c": "file name",
                "g": "parameter", "s": "parameter"}


def parse_options(argv: list[str]) -> Options:
    """nginx's `ngx_get_options`; raises UsageError with nginx's message."""
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            raise UsageError(f'invalid option: "{arg}"')
        pos = 1
        while pos < len(arg):
            flag = arg[pos]
            pos += 1
            if flag in _VALUE_FLAGS:
                if pos < len(arg):
                    value = arg[pos:]
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    raise UsageError(f'option "-{flag}" requires {_VALUE_FLAGS[flag]}')
                _set_value(opts, flag, value)
                break
            _set_flag(opts, flag)
        i += 1
    return opts


def _set_flag(opts: Options, flag: str) -> None:
    if flag in "?h":
        opts.show_version = opts.show_help = True
    elif flag == "v":
        opts.show_version = True
    elif flag == "V":
        opts.show_version = opts.show_configure = True
    elif flag == "t":
        opts.test_config = True
    elif flag == "T":
        opts.test_config = opts.dump_config = True
    elif flag == "q":
        opts.quiet = True
    else:
        raise UsageError(f'invalid option: "{flag}"')


def _set_value(opts: Options, flag: str, value: str) -> None:
    if flag == "p":
        opts.prefix = value
    elif flag == "e":
        opts.error_log = "" if value == "stderr" else value
    elif flag == "c":
        opts.conf_file = value
    elif flag == "g":
        opts.conf_params = value
    elif value in SIGNALS:
        opts.signal = value
    else:
        raise UsageError(f'invalid option: "-s {value}"')


# ---------------------------------------------------------------- version and help

def default_prefix() -> str:
    """wsgate's stand-in for nginx's compiled-in prefix (see the module docstring)."""
    if os.path.isdir(DEFAULT_PREFIX_DIR):
        return DEFAULT_PREFIX_DIR
    return _with_slash(os.getcwd())


def configure_arguments(modules: tuple[Module, ...] = MODULES) -> str:
    """The `configure arguments:` value, in nginx's spelling."""
    args = [f"--prefix={default_prefix()}", f"--conf-path={DEFAULT_CONF}",
            "--error-log-path=stderr", f"--pid-path={DEFAULT_PID}"]
    for mod in modules:
        if mod.default and not mod.has:
            args.append(f"--without-{mod.name}")
        elif mod.has and not mod.default:
            args.append(f"--with-{mod.name}")
    return " ".join(args)


def version_text(opts: Options) -> str:
    """What `ngx_show_version_info` prints for -v, -V and -h."""
    # nginx's NGINX_VER_BUILD form ("nginx/1.22.1 (Ubuntu)") keeps the version
    # parseable by tools (nginx-tests' has_version) while naming wsgate.
    lines = [f"nginx version: nginx/{NGINX_COMPAT} ({PROGRAM}/{__version__})"]
    if opts.show_help:
        lines.append(_help_text())
    if opts.show_configure:
        lines.append(f"built by {_python_build()}")
        lines.append(f"built with {_libraries()}")
        lines.append(f"built with {ssl.OPENSSL_VERSION}")
        lines.append("TLS SNI support enabled")
        lines.append(f"configure arguments: {configure_arguments()}")
    return "\n".join(lines) + "\n"


def _help_text() -> str:
    return (
        f"Usage: {PROGRAM} [-?hvVtTq] [-s signal] [-p prefix]\n"
        f"{' ' * len(PROGRAM)}        [-e filename] [-c filename] [-g directives]\n"
        "\n"
        "Options:\n"
        "  -?,-h         : this help\n"
        "  -v            : show version and exit\n"
        "  -V            : show version and configure options then exit\n"
        "  -t            : test configuration and exit\n"
        "  -T            : test configuration, dump it and exit\n"
        "  -q            : suppress non-error messages during configuration testing\n"
        "  -s signal     : send signal to a master process: stop, quit, reopen, reload\n"
        f"  -p prefix     : set prefix path (default: {default_prefix()})\n"
        "  -e filename   : set error log file (default: stderr)\n"
        f"  -c filename   : set configuration file (default: {DEFAULT_CONF})\n"
        "  -g directives : set global directives out of configuration file\n"
    )


def _python_build() -> str:
    impl = sys.implementation.name
    name = "CPython" if impl == "cpython" else impl
    return f"{name} {'.'.join(map(str, sys.version_info[:3]))}"


def _libraries() -> str:
    from importlib import metadata

    found = []
    for dist in ("uvloop",):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"{dist} (missing)")
    return ", ".join(found)


# ---------------------------------------------------------------- paths

def _with_slash(path: str) -> str:
    return path if not path or path.endswith("/") else path + "/"


def full_name(prefix: str, name: str) -> str:
    """nginx's `ngx_get_full_name`: prefix + name unless name is absolute."""
    return name if name.startswith("/") else prefix + name


def _absolute(path: str) -> str:
    """A path the loader can't misread: relative only when `-p` itself was relative
    (nginx then prints it relative, and so do our messages), resolved against cwd."""
    return path if path.startswith("/") else os.path.join(os.getcwd(), path)


@dataclass(frozen=True)
class Paths:
    prefix: str
    conf_file: str
    error_log: str | None  # None: stderr


def resolve_paths(opts: Options) -> Paths:
    """nginx's `ngx_process_options`: the prefix and the absolute config path."""
    prefix = _with_slash(opts.prefix) if opts.prefix is not None else default_prefix()
    conf = full_name(prefix, opts.conf_file if opts.conf_file is not None else DEFAULT_CONF)
    elog = opts.error_log
    return Paths(prefix, conf, full_name(prefix, elog) if elog else None)


# ---------------------------------------------------------------- main

def main(argv: list[str]) -> int:
    """Run nginx's command line; returns the exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 1
    except Exception as exc:  # a bug: report it nginx-style, never as a traceback
        _stderr(f"{PROGRAM}: [alert] internal error: {type(exc).__name__}: {exc} "
                f"(this is a wsgate bug; please report it)\n")
        return 1


def _main(argv: list[str]) -> int:
    try:
        opts = parse_options(argv)
    except UsageError as exc:
        _stderr(f"{PROGRAM}: {exc}\n")
        return 1
    if opts.show_version:
        _stderr(version_text(opts))
        if not opts.test_config:
            return 0
    paths = resolve_paths(opts)
    log = _startup_log(paths, opts)
    try:
        return _run(opts, paths, log)
    finally:
        log.close()


def _startup_log(paths: Paths, opts: Options) -> ErrorLog:
    """nginx's `ngx_log_init`: `notice` level, `info` under -t, stderr if it can't open."""
    level = "info" if opts.test_config else "notice"
    log = ErrorLog.open(paths.error_log, level=level)
    if log.open_error is not None:
        err = log.open_error.errno or errno.EIO
        _stderr(f"{PROGRAM}: [alert] could not open error log file: open() "
                f'"{paths.error_log}" failed ({err}: {os.strerror(err)})\n')
    return log


def _run(opts: Options, paths: Paths, log: ErrorLog) -> int:
    cfg = _load(opts, paths, log)
    if opts.test_config:
        return _finish_test(opts, paths, log, cfg)
    if cfg is None:
        return 1
    if opts.signal is not None:
        return send_signal(cfg, paths, opts.signal, log)
    return _serve(cfg, paths, log, opts.conf_params)


def _load(opts: Options, paths: Paths, log: ErrorLog) -> Any:
    """Load the config, logging errors and warnings as nginx does; None on failure."""
    from wsgate.config.load import InitError, load_config

    def warn(finding: ConfigError) -> None:
        log.write(finding.level or "warn", str(finding))

    try:
        cfg = load_config(_absolute(paths.conf_file), prefix=paths.prefix,
                          globals_=opts.conf_params, resolve=resolve, warn=warn,
                          default_error_log=paths.error_log or "stderr")
    except InitError as exc:   # nginx finds these after printing "syntax is ok"
        _syntax_ok(opts, paths)
        log.write(exc.level or "emerg", str(exc))
        return None
    except ConfigError as exc:
        log.write(exc.level or "emerg", str(exc))
        return None
    try:   # certificates and keys: nginx's messages, before "syntax is ok"
        from wsgate.tls import check_config
        check_config(cfg, warn=warn)
    except ConfigError as exc:
        log.write(exc.level or "emerg", str(exc))
        return None
    _syntax_ok(opts, paths)
    return cfg


def _syntax_ok(opts: Options, paths: Paths) -> None:
    if opts.test_config and not opts.quiet:
        _stderr(f"{PROGRAM}: the configuration file {paths.conf_file} syntax is ok\n")


def _finish_test(opts: Options, paths: Paths, log: ErrorLog, cfg: Any) -> int:
    """After a parse: nginx -t's file checks, verdict and -T dump."""
    if cfg is None or not _check_files(cfg, paths, log):
        _stderr(f"{PROGRAM}: configuration file {paths.conf_file} test failed\n")
        return 1
    if not opts.quiet:
        _stderr(f"{PROGRAM}: configuration file {paths.conf_file} test is successful\n")
    if opts.dump_config:
        _dump(paths)
    return 0


def _check_files(cfg: Any, paths: Paths, log: ErrorLog) -> bool:
    """What `ngx_init_cycle` opens under -t: the pid file (created, never truncated),
    then the log files; the first failure is an `[emerg] open() ... failed`."""
    targets: list[str | None] = [pid_path(cfg, paths)]
    error_logs = [_log_path(e) for e in (getattr(cfg, "error_logs", None) or ())]
    targets += error_logs if error_logs else [paths.error_log]
    targets += [_log_path(a) for a in _access_logs(getattr(cfg, "http", None))]
    for target in targets:
        if not _is_file_target(target):
            continue
        target = full_name(paths.prefix, target)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            log.write("emerg", f'open() "{target}" failed', err=exc.errno or errno.EIO)
            return False
        os.close(fd)
    return True


def _log_path(entry: Any) -> Any:
    """A log entry's file: `.path` on model objects, the first word of raw tuples."""
    if isinstance(entry, (tuple, list)):
        return entry[0] if entry else None
    return getattr(entry, "path", entry)


def _access_logs(root: Any) -> list[Any]:
    """Every AccessLog object in the http model, in declaration order, each path once."""
    found: list[Any] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None or isinstance(node, (str, bytes, int, float)) or id(node) in seen:
            continue
        seen.add(id(node))
        if type(node).__name__ == "AccessLog":
            found.append(node)
        elif isinstance(node, dict):
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, (list, tuple)):
            stack.extend(reversed(node))
        elif dataclasses.is_dataclass(node):
            stack.extend(reversed([getattr(node, f.name) for f in dataclasses.fields(node)]))
    unique = {str(_log_path(a)): a for a in found}
    return list(unique.values())


def _is_file_target(target: object) -> TypeGuard[str]:
    return (isinstance(target, str) and target not in ("", "stderr", "off")
            and not target.startswith(("syslog:", "memory:")))


def pid_path(cfg: Any, paths: Paths) -> str:
    """The config's `pid` file, or the default one under the prefix."""
    pid = getattr(cfg, "pid", None)
    return str(pid) if pid else full_name(paths.prefix, DEFAULT_PID)


def _dump(paths: Paths) -> None:
    """-T: every file read, in reading order, as nginx's `# configuration file` blocks."""
    from wsgate.config.load import config_files

    out = sys.stdout.buffer
    for name, text in config_files(_absolute(paths.conf_file), prefix=paths.prefix):
        block = f"# configuration file {name}:\n{text}\n"
        out.write(block.encode("utf-8", "surrogateescape"))
    out.flush()


def send_signal(cfg: Any, paths: Paths, name: str, log: ErrorLog) -> int:
    """nginx's `ngx_signal_process`: read the master's pid file and signal it."""
    log.write("notice", "signal process started")
    path = pid_path(cfg, paths)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(22)
    except OSError as exc:
        log.write("error", f'open() "{path}" failed', err=exc.errno or errno.EIO)
        return 1
    text = raw.rstrip(b"\r\n").decode("latin-1")
    if not text.isdigit() or not text.isascii():
        log.write("error", f'invalid PID number "{text}" in "{path}"')
        return 1
    signo = SIGNALS[name]
    try:
        os.kill(int(text), signo)
    except OSError as exc:
        log.write("alert", f"kill({int(text)}, {int(signo)}) failed", err=exc.errno or errno.EIO)
        return 1
    return 0


def _serve(cfg: Any, paths: Paths, log: ErrorLog, globals_: str | None) -> int:
    """Hand the loaded config to the process model; `-g` goes along so a HUP
    reload re-applies it, as nginx does."""
    from wsgate import master

    return int(master.run(cfg, prefix=paths.prefix, conf_file=paths.conf_file, log=log,
                          globals_=globals_) or 0)


def _stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except OSError:
        pass
