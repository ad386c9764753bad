"""Signal receivers of the invite flow (connected in AccountsConfig.ready)."""

from __future__ import annotations

from allauth.account.signals import email_confirmed
from django.dispatch import receiver


@receiver(email_confirmed)
def credit_invite_on_confirmation(sender, request, email_address, **kwargs) -> None:
    """Verification can come after the first pull; the credit is checked again then."""
    from accounts.services import invite_credit

    invite_credit(invitee_id=email_address.user_id)
