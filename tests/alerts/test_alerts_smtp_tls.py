"""E-mail over TLS with a login, against a real aiosmtpd on 127.0.0.1 with a certificate made for the
test (openssl), through apprise as qcdaemon configures it: ``mailtos://user:password@host:port``
with ``mode=starttls`` (STARTTLS, RFC 3207) or ``mode=ssl`` (TLS from the first byte, RFC 8314).

The certificate is checked as for any server: a lab whose mail server has a certificate of its own
CA trusts that CA the way OpenSSL does (the system store, or ``SSL_CERT_FILE`` naming a bundle in the
daemon's environment, e.g. the systemd unit's ``Environment=``); one that cannot, adds ``verify=no``
to that channel's URL (apprise's option: encrypted, but the server is not authenticated).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from alertproc import alert_daemon
from daemonproc import Daemon
from receivers import SmtpServer, self_signed

pytestmark = pytest.mark.timeout(300)
USER, PASSWORD = "qcbot", "Tls-s3cret-2026"
ADDRS = "from=qcdaemon@lab.example.org&to=tech@lab.example.org"


def mail_url(port: int, mode: str, password: str = PASSWORD, extra: str = "") -> str:
    return f"mailtos://{USER}:{password}@127.0.0.1:{port}?mode={mode}&{ADDRS}{extra}"


def daemon_with(tmp_path: Path, channels: dict[str, str | dict[str, str]], env: dict[str, str] | None = None,
                lab: bool = False) -> Daemon:
    d = alert_daemon(tmp_path, tmp_path / "instrument", channels, [], lab=lab)
    base = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    d.env = {**base, **(env or {})}  # only what the test gives decides which certificates are trusted
    return d


def test_starttls_with_a_login_through_a_running_daemon_that_trusts_the_lab_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with SmtpServer(tls="starttls", cert=(cert, key), login=(USER, PASSWORD)) as smtp:
        secret = tmp_path / "mail.url"  # the URL with its password in a file of its own, not in the config
        secret.write_text(mail_url(smtp.port, "starttls") + "\n")
        secret.chmod(0o600)
        d = daemon_with(tmp_path, {"mail": {"url_file": str(secret)}}, env={"SSL_CERT_FILE": str(cert)}, lab=True)
        assert PASSWORD not in d.config.read_text()
        try:
            d.start()
            out = json.loads(d.cli("alerts", "test", "mail").stdout)  # sent by the daemon process
            assert out["sent"] is True and out["target"] == "mailtos://127.0.0.1", out
            [(subject, body)] = smtp.mails()
            assert subject == "[qcdaemon] test message" and "alert channel 'mail'" in body
            [session] = smtp.sessions()
            assert session["tls"] in ("TLSv1.2", "TLSv1.3") and session["login"] == USER
            assert smtp.refused == []
            assert d.stop() == 0
            assert PASSWORD not in d.log.read_text()
        finally:
            d.close()


def test_implicit_tls_with_a_login_and_a_wrong_password_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with SmtpServer(tls="implicit", cert=(cert, key), login=(USER, PASSWORD)) as smtp:
        d = daemon_with(tmp_path, {"mail": mail_url(smtp.port, "ssl"),
                                   "wrong": mail_url(smtp.port, "ssl", password="not-the-password")},
                        env={"SSL_CERT_FILE": str(cert)})
        try:
            bad = d.cli("alerts", "test", "wrong", check=False)  # no daemon running: the CLI sends itself
            out = json.loads(bad.stdout)
            assert bad.returncode == 1 and out["sent"] is False and smtp.mails() == [], out
            assert smtp.refused and set(smtp.refused) == {USER}  # the login reached the server over TLS, refused
            # (smtplib tries each offered mechanism, PLAIN and LOGIN)
            assert "535" in out["error"] or "uthentication" in out["error"], out
            assert "not-the-password" not in bad.stdout + bad.stderr
            ok = json.loads(d.cli("alerts", "test", "mail").stdout)
            assert ok["sent"] is True, ok
            [(subject, _)] = smtp.mails()
            assert subject == "[qcdaemon] test message"
            [session] = smtp.sessions()
            assert session["tls"] in ("TLSv1.2", "TLSv1.3") and session["login"] == USER
        finally:
            d.close()


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_an_untrusted_certificate_is_refused_unless_the_channel_says_verify_no(tmp_path: Path, mode: str) -> None:
    cert, key = self_signed(tmp_path)
    with SmtpServer(tls="starttls" if mode == "starttls" else "implicit", cert=(cert, key),
                    login=(USER, PASSWORD)) as smtp:
        d = daemon_with(tmp_path, {"checked": mail_url(smtp.port, mode),
                                   "unchecked": mail_url(smtp.port, mode, extra="&verify=no")})
        try:
            res = d.cli("alerts", "test", "checked", check=False)
            out = json.loads(res.stdout)
            assert res.returncode == 1 and out["sent"] is False and smtp.mails() == []
            assert "CERTIFICATE_VERIFY_FAILED" in out["error"], out  # the reason, for doctor and the web page
            assert PASSWORD not in res.stdout + res.stderr
            ok = json.loads(d.cli("alerts", "test", "unchecked").stdout)
            assert ok["sent"] is True, ok
            assert [s["login"] for s in smtp.sessions()] == [USER]
        finally:
            d.close()
