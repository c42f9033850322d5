"""Bad TLS input at load: nginx's exact messages (literal, and against real nginx -t)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from wsgate.config.load import load_config
from wsgate.tls import TlsConfigError, check_config

NGINX = "/usr/sbin/nginx"
_SSL = "listen 127.0.0.1:18443 ssl;"
_PROXY = "listen 127.0.0.1:18443; location / { proxy_pass https://127.0.0.1:1; %s }"

# (server body, nginx's message with {c} for the conf directory; None: loads fine)
CASES = [
    (f"{_SSL} ssl_certificate missing.crt; ssl_certificate_key a.key;",
     'cannot load certificate "{c}/missing.crt": BIO_new_file() failed (SSL: '
     "error:80000002:system library::No such file or directory:calling "
     "fopen({c}/missing.crt, r) error:10000080:BIO routines::no such file)"),
    (f"{_SSL} ssl_certificate a.crt; ssl_certificate_key missing.key;",
     'cannot load certificate key "{c}/missing.key": BIO_new_file() failed (SSL: '
     "error:80000002:system library::No such file or directory:calling "
     "fopen({c}/missing.key, r) error:10000080:BIO routines::no such file)"),
    (f"{_SSL} ssl_certificate a.crt; ssl_certificate_key b.key;",
     'SSL_CTX_use_PrivateKey("{c}/b.key") failed (SSL: error:05800074:x509 '
     "certificate routines::key values mismatch)"),
    (f"{_SSL} ssl_certificate garbage.txt; ssl_certificate_key a.key;",
     'cannot load certificate "{c}/garbage.txt": PEM_read_bio_X509_AUX() failed (SSL: '
     "error:0480006C:PEM routines::no start line:Expecting: TRUSTED CERTIFICATE)"),
    (f"{_SSL} ssl_certificate a.crt; ssl_certificate_key garbage.txt;",
     'cannot load certificate key "{c}/garbage.txt": PEM_read_bio_PrivateKey() failed '
     "(SSL: error:1E08010C:DECODER routines::unsupported:No supported data to decode. "
     "Input type: PEM)"),
    (_SSL, 'no "ssl_certificate" is defined for the "listen ... ssl" directive in '
           "{c}/nginx.conf:3"),
    (f"{_SSL} ssl_certificate a.crt;",
     'no "ssl_certificate_key" is defined for certificate "a.crt"'),
    (f"{_SSL} ssl_certificate a.crt; ssl_certificate_key a.key; ssl_verify_client on;",
     "no ssl_client_certificate for ssl_verify_client"),
    (f"{_SSL} ssl_certificate a.crt; ssl_certificate_key a.key; ssl_ciphers FOO;",
     'SSL_CTX_set_cipher_list("FOO") failed (SSL: error:0A0000B9:SSL routines::'
     "no cipher match)"),
    (f"{_SSL} ssl_certificate a.crt; ssl_certificate_key a.key; ssl_ecdh_curve foo;",
     'SSL_CTX_set1_curves_list("foo") failed (SSL: error:0A080106:SSL routines::'
     "passed invalid argument:group 'foo' cannot be set)"),
    (f"{_SSL} ssl_certificate a.crt; ssl_certificate_key a.key; "
     "ssl_client_certificate nope.crt; ssl_verify_client on;",
     'SSL_CTX_load_verify_locations("{c}/nope.crt") failed (SSL: error:80000002:system '
     "library::No such file or directory:calling fopen({c}/nope.crt, r) error:10000080:"
     "BIO routines::no such file error:05880002:x509 certificate routines::system lib)"),
    (_PROXY % "proxy_ssl_verify on;",
     "no proxy_ssl_trusted_certificate for proxy_ssl_verify"),
    (_PROXY % "proxy_ssl_certificate a.crt;",
     'no "proxy_ssl_certificate_key" is defined for certificate "a.crt"'),
    (_PROXY % "proxy_ssl_certificate missing.crt; proxy_ssl_certificate_key a.key;",
     'cannot load certificate "{c}/missing.crt": BIO_new_file() failed (SSL: '
     "error:80000002:system library::No such file or directory:calling "
     "fopen({c}/missing.crt, r) error:10000080:BIO routines::no such file)"),
    (_PROXY % "proxy_ssl_trusted_certificate missing.crt;", None),   # unused: not loaded
    ("listen 127.0.0.1:18443; ssl_certificate a.crt; ssl_certificate_key missing.key;",
     'cannot load certificate key "{c}/missing.key": BIO_new_file() failed (SSL: '
     "error:80000002:system library::No such file or directory:calling "
     "fopen({c}/missing.key, r) error:10000080:BIO routines::no such file)"),
    (f"{_SSL} ssl_certificate a.crt; ssl_certificate_key a.key; "
     "ssl_ecdh_curve X25519:prime256v1; ssl_protocols TLSv1.2 TLSv1.3; "
     "ssl_session_cache shared:SSL:1m; ssl_session_timeout 10m; "
     "ssl_prefer_server_ciphers on; ssl_certificate rsa.crt; ssl_certificate_key rsa.key;",
     None),
]


def write_conf(pki_dir: pathlib.Path, body: str) -> pathlib.Path:
    (pki_dir / "garbage.txt").write_text("hello\n")
    conf = pki_dir / "nginx.conf"
    conf.write_text(f"events {{}}\nhttp {{\nserver {{\n{body}\n}}\n}}\n")
    (pki_dir.parent / "logs").mkdir(exist_ok=True)
    return conf


def wsgate_result(conf: pathlib.Path) -> tuple[str | None, list[str]]:
    cfg = load_config(str(conf), prefix=str(conf.parent.parent))
    warnings: list[str] = []
    try:
        check_config(cfg, warn=lambda e: warnings.append(str(e)))
    except TlsConfigError as exc:
        return str(exc), warnings
    return None, warnings


@pytest.mark.parametrize("body,message", CASES)
def test_load_message(pki, body, message):
    conf = write_conf(pki.dir, body)
    got, _ = wsgate_result(conf)
    assert got == (message.format(c=pki.dir) if message else None)


@pytest.mark.parametrize("body,message", CASES)
def test_load_message_against_nginx(pki, body, message):
    if not os.access(NGINX, os.X_OK):
        pytest.fail(f"{NGINX} missing: the differential check needs real nginx 1.22")
    conf = write_conf(pki.dir, body)
    run = subprocess.run([NGINX, "-t", "-p", f"{pki.dir.parent}/", "-c", "conf/nginx.conf",
                          "-e", f"{pki.dir.parent}/logs/error.log"],
                         capture_output=True, text=True, timeout=20)
    emerg = [line.removeprefix("nginx: [emerg] ") for line in run.stderr.splitlines()
             if "[emerg]" in line]
    got, _ = wsgate_result(conf)
    assert emerg == ([got] if got else [])


def test_expired_certificate_warns_but_loads(pki):
    conf = write_conf(pki.dir, f"{_SSL} ssl_certificate expired.crt; "
                               "ssl_certificate_key expired.key;")
    got, warnings = wsgate_result(conf)
    assert got is None
    assert warnings == [f'certificate "{pki.dir}/expired.crt" has expired '
                        "(notAfter 2020-01-01 00:00:00 GMT)"]


def test_error_keeps_the_directive_position(pki):
    conf = write_conf(pki.dir, _SSL)
    cfg = load_config(str(conf), prefix=str(pki.dir.parent))
    with pytest.raises(TlsConfigError) as info:
        check_config(cfg)
    assert info.value.where == (str(conf), 3)
    assert info.value.level == "emerg"


def test_encrypted_key_with_password_file(pki, tmp_path):
    key = subprocess.run(["openssl", "pkey", "-in", str(pki.dir / "a.key"), "-aes256",
                          "-passout", "pass:secret"], capture_output=True, check=True,
                         timeout=10).stdout
    (pki.dir / "enc.key").write_bytes(key)
    (pki.dir / "pass.txt").write_text("wrong\nsecret\n")
    body = f"{_SSL} ssl_certificate a.crt; ssl_certificate_key enc.key;"
    assert wsgate_result(write_conf(pki.dir, body + " ssl_password_file pass.txt;"))[0] is None
    got = wsgate_result(write_conf(pki.dir, body))[0]
    assert got is not None and got.startswith(
        f'cannot load certificate key "{pki.dir}/enc.key": PEM_read_bio_PrivateKey() failed')


def test_unreadable_files_are_not_a_traceback(pki, tmp_path):
    shutil.copy(pki.dir / "a.crt", tmp_path / "dir.crt")
    body = f"{_SSL} ssl_certificate {tmp_path}; ssl_certificate_key a.key;"
    got, _ = wsgate_result(write_conf(pki.dir, body))
    assert got is not None and got.startswith(f'cannot load certificate "{tmp_path}"')
