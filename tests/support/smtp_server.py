"""A real SMTP server for tests (aiosmtpd), in the test's own event loop, on 127.0.0.1::

    async with serve_smtp(inbox := Inbox(), security="starttls") as server:
        ...  # server.port takes mail; inbox.mails holds what was accepted

`security`: "none" (plain), "starttls" (STARTTLS offered and required before MAIL) or "tls"
(TLS from the first byte), with a self-signed certificate for 127.0.0.1 whose PEM is
`server.ca_file`. `login`: (user, password) that AUTH must give (over TLS only, as servers
do). The inbox parses each accepted message as a mail client would and keeps it with how it
came; a plan of replies makes it refuse the next messages (`fail_next`) or recipients.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email
import email.policy
import ipaddress
import ssl
import tempfile
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Security = Literal["none", "starttls", "tls"]


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage  # as a mail client parses it
    encrypted: bool  # sent over TLS (STARTTLS or implicit)
    login: str | None  # the user it authenticated as

    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert isinstance(part, EmailMessage)
        return _lines(str(part.get_content()))

    def html(self) -> str | None:
        part = self.message.get_body(("html",))
        return _lines(str(part.get_content())) if isinstance(part, EmailMessage) else None


def _lines(text: str) -> str:
    """With the line ends a mail client shows: a part's CRLF, CR and LF are all the wire's
    CRLF (RFC 5322 has no other line end)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass
class Inbox:
    """The handler: accepts mail, or refuses it as planned."""

    mails: list[Mail] = field(default_factory=list)
    attempts: int = 0  # DATA commands, accepted or not
    refused_recipients: dict[str, str] = field(default_factory=dict)  # address -> reply
    _plan: list[str] = field(default_factory=list)  # replies to the next DATA commands

    def fail_next(self, count: int, reply: str = "451 4.3.0 Try again later") -> None:
        self._plan.extend([reply] * count)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook names)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refused_recipients:
            return self.refused_recipients[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        self.attempts += 1
        if self._plan:
            return self._plan.pop(0)
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = str(session.auth_data) if session.authenticated else None
        encrypted = server.transport is not None and (
            server.transport.get_extra_info("sslcontext") is not None
        )
        self.mails.append(Mail(envelope.mail_from or "", list(envelope.rcpt_tos), raw,
                               message, encrypted, login))  # fmt: skip
        return "250 2.0.0 OK: queued"


@dataclass(frozen=True)
class RunningSmtp:
    port: int
    ca_file: Path  # the PEM of the server's self-signed certificate


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


@contextlib.asynccontextmanager
async def serve_smtp(
    inbox: Inbox, *, security: Security = "none", login: tuple[str, str] | None = None
) -> AsyncIterator[RunningSmtp]:
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = _self_signed(Path(directory))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)

        def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                         auth_data: Any) -> AuthResult:  # fmt: skip
            if not isinstance(auth_data, LoginPassword):
                return AuthResult(success=False, handled=False)
            user = auth_data.login.decode()
            ok = (user, auth_data.password.decode()) == login
            return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

        def protocol() -> SMTP:
            with warnings.catch_warnings():
                # A plain server that wants a login is what the tests ask for, knowingly.
                warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
                return _smtp()

        def _smtp() -> SMTP:
            return SMTP(
                inbox,
                hostname="smtp.test",
                loop=loop,
                tls_context=context if security == "starttls" else None,
                require_starttls=security == "starttls",
                authenticator=authenticate if login else None,
                auth_required=login is not None,
                # After STARTTLS only; aiosmtpd cannot tell that an implicit TLS connection
                # is encrypted, and plain servers take a login here to test it without TLS.
                auth_require_tls=security == "starttls",
            )

        server = await loop.create_server(protocol, "127.0.0.1", 0,
                                          ssl=context if security == "tls" else None)  # fmt: skip
        try:
            yield RunningSmtp(server.sockets[0].getsockname()[1], cert_file)
        finally:
            server.close()
            await server.wait_closed()
