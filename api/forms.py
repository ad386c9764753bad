from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

SCOPE_CHOICES = [
    ("read", _("read: GET, look only")),
    ("write", _("write: start, rotate, invite and other changes")),
    ("staff", _("staff: the staff API")),
]


class TokenForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=100)
    expires_in_days = forms.IntegerField(label=_("Expires in (days)"), min_value=1, initial=90)
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"),
        choices=SCOPE_CHOICES,
        initial=["read"],
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": _("Choose at least one scope.")},
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not user.is_staff:
            # Not offered; a forged `staff` is then "not one of the available choices".
            self.fields["scopes"].choices = SCOPE_CHOICES[:2]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError(_("Give the token a name."))
        return name

    def clean_expires_in_days(self) -> int:
        days = self.cleaned_data["expires_in_days"]
        if days > settings.API_TOKEN_MAX_DAYS:
            raise forms.ValidationError(
                _("At most %(days)d days.") % {"days": settings.API_TOKEN_MAX_DAYS}
            )
        return days
