"""Outgoing e-mail: render templates, and deliver the outbox over SMTP.

Every gateway process runs `MailWorker`; rows are claimed with SKIP LOCKED so several workers never
send one mail twice, and a failed delivery is retried with backoff instead of being dropped."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib

from sharehub.config import Settings
from sharehub.platform import Platform
from storage import email_outbox
from storage.db import transaction

log = logging.getLogger(__name__)
_BATCH = 20
_SMTP_TIMEOUT_SECS = 15


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    body_text: str


def render(settings: Settings, template: str, locale: str, **values: object) -> RenderedEmail:
    """Templates are `web/templates/email/<name>.<locale>.txt`: first line subject, rest body."""
    path: Path = settings.web_dir / "templates" / "email" / f"{template}.{locale}.txt"
    subject, _, body = path.read_text(encoding="utf-8").partition("\n")
    return RenderedEmail(subject=subject.strip(), body_text=body.format(**values).strip() + "\n")


@dataclass(frozen=True)
class SmtpTarget:
    hostname: str
    port: int
    use_tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must look like smtp://user:pass@host:587 or smtps://host:465")
        implicit_tls = parts.scheme == "smtps"
        return cls(
            hostname=parts.hostname,
            port=parts.port or (465 if implicit_tls else 25),
            use_tls=implicit_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


async def deliver(target: SmtpTarget, sender: str, to_address: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to_address
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="sharehub.ru")
    message.set_content(body)
    await aiosmtplib.send(
        message,
        hostname=target.hostname,
        port=target.port,
        use_tls=target.use_tls,
        username=target.username,
        password=target.password,
        timeout=_SMTP_TIMEOUT_SECS,
    )


async def send_due(platform: Platform) -> int:
    """Deliver what is due; returns how many were sent."""
    if not platform.settings.smtp_url:
        return 0
    target = SmtpTarget.parse(platform.settings.smtp_url)
    sent = 0
    async with transaction(platform.db, "send_email_batch") as conn:
        for email in await email_outbox.claim_due(conn, _BATCH):
            try:
                await deliver(target, platform.settings.mail_from, email.to_address, email.subject, email.body_text)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                log.warning("e-mail delivery failed", extra={"email_id": str(email.id), "error": str(exc)})
                await email_outbox.mark_failed(conn, email.id, email.attempts, str(exc))
            else:
                await email_outbox.mark_sent(conn, email.id)
                sent += 1
    return sent
