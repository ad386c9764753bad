"""What an email address stands for: the mailbox behind it (its canonical form, shared by every
alias of one mailbox), whether its domain hands out throwaway mailboxes, and its masked form.

Rules:
- The canonical address is lower case, drops a `+tag` on every domain (most mail servers
  deliver `me+x@` to `me@`), and applies the provider rules email-normalize maintains: dots
  ignored and googlemail.com folded into gmail.com at consumer Gmail, me.com/mac.com folded into
  icloud.com, and so on. No DNS: only providers known by their domain are recognised, so a
  Google Workspace domain keeps its dots (they may be different mailboxes there).
- A domain is disposable when it or a parent domain is on the disposable-email-domains list or
  on INVITE_BLOCKED_DOMAINS (staff additions, comma-separated).
"""

from __future__ import annotations

from disposable_email_domains import blocklist
from django.conf import settings
from django.utils.crypto import salted_hmac
from email_normalize import Normalizer


def _provider_normalized(address: str) -> str:
    """email-normalize's answer with DNS skipped.

    Its blocking helper wraps the coroutine in asyncio.run(), which fails where an event loop
    already runs (the browser tests' thread). With skip_dns the coroutine never waits on I/O,
    so it finishes on its first step.
    """
    step = Normalizer(skip_dns=True).normalize(address)
    try:
        step.send(None)
    except StopIteration as done:
        return done.value.normalized_address
    step.close()
    raise RuntimeError("email-normalize waited on I/O with DNS skipped")


def email_canonical(email: str) -> str:
    """The mailbox `email` delivers to, as one string: equal for every alias of one mailbox."""
    email = (email or "").strip().lower()
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        return email
    local = local.split("+", 1)[0] or local
    try:
        return _provider_normalized(f"{local}@{domain}")
    except ValueError:  # an address email.utils cannot parse: keep the simple form
        return f"{local}@{domain}"


def mask_email(email: str) -> str:
    """'friend@example.com' -> 'fr****@example.com': enough to recognise, not to harvest."""
    local, _at, domain = email.partition("@")
    shown = local[:2] if len(local) > 2 else local[:1]
    return f"{shown}{'*' * max(1, len(local) - len(shown))}@{domain}"


def email_domain(email: str) -> str:
    return (email or "").strip().lower().rpartition("@")[2].strip(".")


def email_domain_blocked(email: str) -> bool:
    """A throwaway-mail domain: an invite to it earns nothing."""
    domain = email_domain(email)
    staff = {d.strip().lower().strip(".") for d in settings.INVITE_BLOCKED_DOMAINS}
    labels = domain.split(".")
    # The domain and each parent (mx.mailinator.com -> mailinator.com), never the bare suffix.
    candidates = {".".join(labels[i:]) for i in range(len(labels) - 1)}
    return bool(candidates & (blocklist | staff))


def mailbox_digest(email: str) -> str:
    """A keyed hash of the mailbox behind `email` (HMAC with SECRET_KEY): equal for every alias
    of one mailbox, and no address without the key. Kept for erased accounts (no second
    welcome bonus)."""
    return salted_hmac(
        "accounts.erased-mailbox", email_canonical(email), algorithm="sha256"
    ).hexdigest()
