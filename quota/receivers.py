"""Signal receivers of the ledger (connected in QuotaConfig.ready): the invite credit when an
address is confirmed."""

from __future__ import annotations

import logging

from allauth.account.signals import email_confirmed
from django.dispatch import receiver

from quota.invites import invite_credit

log = logging.getLogger(__name__)


@receiver(email_confirmed)
def credit_invite_on_confirmation(sender, request, email_address, **kwargs) -> None:
    """Verification can come after the first pull; the credit is checked again then."""
    try:
        invite_credit(invitee_id=email_address.user_id)
    except Exception:
        # Never break the confirmation; ledger_reconcile credits it later.
        log.exception("invite credit on confirmation failed for user %s", email_address.user_id)
