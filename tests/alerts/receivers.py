"""Real receivers on 127.0.0.1 for alert tests: an SMTP server (aiosmtpd; plain, STARTTLS or implicit
TLS, optionally requiring a login) and a JSON webhook; :func:`self_signed` makes a certificate."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and localhost) and its key, made by openssl."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class _Collect:
    def __init__(self) -> None:
        self.require_login = False  # refuse MAIL before a successful AUTH (where aiosmtpd's own check cannot be used)
        self.messages: list[email.message.EmailMessage] = []
        self.sessions: list[dict[str, Any]] = []  # per message: TLS version, login used
        self.lock = threading.Lock()

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        if self.require_login and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        tls = server.transport.get_extra_info("ssl_object") if server.transport is not None else None
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self.lock:
            self.messages.append(msg)  # type: ignore[arg-type]
            self.sessions.append({"tls": tls.version() if tls is not None else None, "login": login})
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on its own thread; ``mails()`` are the e-mails received (subject, body).

    ``tls``: "" (plain), "starttls" (STARTTLS required before MAIL) or "implicit" (TLS from the first
    byte), with ``cert`` = (certificate, key); ``login`` = (user, password) makes AUTH required."""

    def __init__(self, port: int | None = None, *, tls: str = "", cert: tuple[Path, Path] | None = None,
                 login: tuple[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.handler = _Collect()
        self.tls = tls
        self.login = login
        self.refused: list[str] = []  # logins refused
        kwargs: dict[str, Any] = {}
        if tls:
            assert cert is not None
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
            if tls == "starttls":
                kwargs |= {"tls_context": ctx, "require_starttls": True}
            else:  # aiosmtpd offers AUTH only after its own STARTTLS unless told the transport is secure,
                # and then warns about auth_required: the handler refuses MAIL without a login instead
                kwargs |= {"ssl_context": ctx, "auth_require_tls": False}
        if login is not None:
            kwargs["authenticator"] = self._authenticate
            if tls == "implicit":
                self.handler.require_login = True
            else:
                kwargs["auth_required"] = True
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self.login is not None and \
            (auth_data.login.decode(), auth_data.password.decode()) == self.login
        if not ok:
            self.refused.append(auth_data.login.decode() if isinstance(auth_data, LoginPassword) else mechanism)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=qcdaemon@lab.example.org&to=tech@lab.example.org"

    def mails(self) -> list[tuple[str, str]]:
        with self.handler.lock:
            out = []
            for m in self.handler.messages:
                part = m.get_body(preferencelist=("plain", "html"))
                text = part.get_content() if part is not None else ""
                out.append((str(m["subject"]), text.replace("\r\n", "\n")))  # SMTP's CRLF lines, as a reader shows them
            return out

    def sessions(self) -> list[dict[str, Any]]:
        with self.handler.lock:
            return list(self.handler.sessions)


class Webhook:
    """An HTTP server that records JSON POSTs; ``down()`` closes the port, ``up()`` opens it again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def up(self) -> Webhook:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                with outer.lock:
                    outer.calls.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook"

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.calls)
