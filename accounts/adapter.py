from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter


class AccountAdapter(DefaultAccountAdapter):
    """Stores every email address in lower case, so one mailbox is one account."""

    def clean_email(self, email: str) -> str:
        return super().clean_email(email).strip().lower()
