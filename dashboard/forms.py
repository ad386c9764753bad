from __future__ import annotations

import uuid

from django import forms
from django.utils.translation import gettext_lazy as _


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"), max_length=2000, widget=forms.TextInput(attrs={"size": 50})
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(_("Say why."))
        return reason


class GrantForm(ReasonForm):
    gigabytes = forms.IntegerField(label=_("Traffic (GB)"), min_value=1, max_value=10_000)
    expires_in_days = forms.IntegerField(
        label=_("Expires in (days, optional)"), min_value=1, max_value=3650, required=False
    )
    # Rendered with the form, so a double submit grants once.
    idempotency_key = forms.RegexField(
        regex=r"^[A-Za-z0-9_-]{8,64}$", widget=forms.HiddenInput, required=False
    )

    field_order = ["gigabytes", "expires_in_days", "reason", "idempotency_key"]

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {})
        kwargs["initial"].setdefault("idempotency_key", uuid.uuid4().hex)
        super().__init__(*args, **kwargs)


class TenantSearchForm(forms.Form):
    q = forms.CharField(label=_("Email or label"), max_length=254, required=False)
