"""nginx in front of the sidecar: `nginx -t` accepts the config, and a real nginx with a throwaway
certificate forwards the platforms' callback paths over TLS while keeping everything else private."""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ports import free_port
from tests.support.processes import ROOT, Process
from tests.support.services import require_binary

CONF = (ROOT / "deploy" / "nginx" / "botwatch.conf").read_text(encoding="utf-8")
CALLBACK_PATHS = ["/dingtalk/callback", "/feishu/event", "/wecom/callback", "/qq/callback", "/slack/events",
                  "/telegram/webhook"]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made for this test only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "fullchain.pem", directory / "privkey.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def site(tmp: Path, upstream_port: int = 8080, http_port: int = 80, https_port: int = 443) -> Path:
    """A main nginx.conf around the committed server config; only paths and ports change."""
    cert, key = self_signed(tmp)
    conf = (
        CONF.replace("/etc/botwatch/tls/fullchain.pem", str(cert)).replace("/etc/botwatch/tls/privkey.pem", str(key))
        .replace("127.0.0.1:8080", f"127.0.0.1:{upstream_port}")
        .replace("listen 80;", f"listen 127.0.0.1:{http_port};").replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    )
    conf = re.sub(r"^\s*listen \[::\].*$", "", conf, flags=re.M)
    (tmp / "botwatch.conf").write_text(conf, encoding="utf-8")
    main = tmp / "nginx.conf"
    main.write_text(
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp}/botwatch.conf;\n}}\n",
        encoding="utf-8",
    )
    return main


def nginx_argv(tmp: Path, main: Path, *extra: str) -> list[str]:
    return [require_binary("nginx"), "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(main), *extra]


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    main = site(tmp_path)
    result = subprocess.run(nginx_argv(tmp_path, main, "-t"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_nginx_refuses_a_broken_config(tmp_path: Path) -> None:
    main = site(tmp_path)
    conf = tmp_path / "botwatch.conf"
    conf.write_text(conf.read_text(encoding="utf-8").replace("proxy_pass", "proxy_passs", 1), encoding="utf-8")
    result = subprocess.run(nginx_argv(tmp_path, main, "-t"), capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "proxy_passs" in result.stderr


def test_every_guide_callback_path_is_proxied() -> None:
    for path in CALLBACK_PATHS:
        assert re.search(rf"location = {re.escape(path)}\s+{{ proxy_pass http://botwatch_sidecar; }}", CONF), path


@pytest.fixture
def nginx(tmp_path: Path, start_bot) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """A real nginx on free ports in front of a real bot standing where the sidecar would be."""
    _, bot_base = start_bot()
    http_port, https_port = free_port(), free_port()
    main = site(tmp_path, int(bot_base.rsplit(":", 1)[1]), http_port, https_port)
    proc = Process(f"nginx-{https_port}", nginx_argv(tmp_path, main, "-g", "daemon off;"), {}, tmp_path)
    base = f"https://127.0.0.1:{https_port}"
    try:
        context = tls_context(tmp_path)
        proc.wait_until(lambda: fetch(f"{base}/health", context)[0] == 200, what="serving TLS")
        yield base, str(tmp_path)
    finally:
        proc.stop()


def tls_context(tmp: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tmp / "fullchain.pem"))


def fetch(url: str, context: ssl.SSLContext, data: bytes | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, dict(exc.headers)
    except (urllib.error.URLError, OSError):
        return 0, {}


def test_callbacks_reach_the_upstream_over_tls_and_metrics_stay_private(nginx: tuple[str, str]) -> None:
    base, tmp = nginx
    context = tls_context(Path(tmp))
    status, headers = fetch(f"{base}/api/health", context)
    assert status == 200
    for path in CALLBACK_PATHS:
        status, headers = fetch(f"{base}{path}", context, data=b"{}")
        # The bot echoes the X-Request-ID nginx sends; nginx's own answers carry none.
        assert "X-Request-ID" in headers, (path, status)
    status, headers = fetch(f"{base}/metrics", context)
    assert status == 404 and "X-Request-ID" not in headers
