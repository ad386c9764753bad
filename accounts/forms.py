from __future__ import annotations

from allauth.account import forms as allauth_forms
from allauth.account.adapter import get_adapter
from allauth.account.models import EmailAddress
from django import forms
from django.contrib import messages
from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from accounts.selectors import user_for_mailbox


class SignupForm(allauth_forms.SignupForm):
    """One account per mailbox: an alias of an existing account's address (another case, a
    +tag, dots at Gmail) is handled like that address itself. allauth's enumeration protection
    then creates nothing, answers as for a new address, and mails the owner."""

    def validate_unique_email(self, value) -> str:
        email = super().validate_unique_email(value)
        if not self.account_already_exists and user_for_mailbox(email=email) is not None:
            self.account_already_exists = True
        return email

    def try_save(self, request):
        """Two sign-ups for one mailbox at the same instant both pass the check above; the
        unique canonical address refuses the second, which is then answered like any
        existing address (no account, the owner mailed) instead of with an error page."""
        try:
            with transaction.atomic():
                return super().try_save(request)
        except IntegrityError:
            if user_for_mailbox(email=self.cleaned_data["email"]) is None:
                raise
            self.account_already_exists = True
            return super().try_save(request)


class AddEmailForm(allauth_forms.AddEmailForm):
    """Adding an address of another account's mailbox: nothing is added, the owner is mailed,
    and the user sees the same answer as for a free address."""

    def clean_email(self) -> str:
        email = super().clean_email()
        owner = user_for_mailbox(email=email)
        self.mailbox_taken = owner is not None and owner.pk != self.user.pk
        return email

    def save(self, request):
        email = self.cleaned_data["email"]
        if not self.mailbox_taken:
            return super().save(request)
        adapter = get_adapter(request)
        adapter.send_account_already_exists_mail(email)
        adapter.add_message(
            request,
            messages.INFO,
            "account/messages/email_confirmation_sent.txt",
            {"email": email, "login": False, "signup": False},
        )
        return EmailAddress(user=self.user, email=email)  # unsaved: nothing was added


class InviteEmailForm(forms.Form):
    email = forms.EmailField(
        label=_("Your friend's email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "off", "data-testid": "invite-email"}),
    )
