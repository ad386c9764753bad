from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class InviteEmailForm(forms.Form):
    email = forms.EmailField(
        label=_("Your friend's email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "off", "data-testid": "invite-email"}),
    )
