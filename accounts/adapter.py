from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django import forms
from django.utils.translation import gettext as _

MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit, and the column's size
MAX_LOCAL_PART_LENGTH = 64


class AccountAdapter(DefaultAccountAdapter):
    def clean_email(self, email: str) -> str:
        """Lower-case every address (one mailbox, one account) and refuse over-long ones.

        allauth would otherwise cut an over-long address to the column's size and store a
        different, wrong address.
        """
        email = super().clean_email(email).strip().lower()
        local = email.rpartition("@")[0]
        if len(email) > MAX_EMAIL_LENGTH or len(local) > MAX_LOCAL_PART_LENGTH:
            raise forms.ValidationError(_("This email address is too long."))
        return email
