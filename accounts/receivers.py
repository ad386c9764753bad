"""Signal receivers of the invite flow (connected in AccountsConfig.ready)."""

from __future__ import annotations

import logging

from allauth.account.signals import email_confirmed
from django.dispatch import receiver

log = logging.getLogger(__name__)


@receiver(email_confirmed)
def credit_invite_on_confirmation(sender, request, email_address, **kwargs) -> None:
    """Verification can come after the first pull; the credit is checked again then."""
    from accounts.services import invite_credit

    try:
        invite_credit(invitee_id=email_address.user_id)
    except Exception:
        # Never break the confirmation; ledger_reconcile credits it later.
        log.exception("invite credit on confirmation failed for user %s", email_address.user_id)
