from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class DeleteAccountForm(forms.Form):
    """The account's address typed out: a deletion is never one stray click."""

    email = forms.CharField(
        label=_("Type your email address to confirm"),
        max_length=254,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "off", "data-testid": "delete-confirm"}),
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_email(self) -> str:
        typed = self.cleaned_data["email"]
        if typed.lower() != self.user.email.lower():
            raise forms.ValidationError(
                _("This is not your account's address. Type it exactly as shown above.")
            )
        return typed
