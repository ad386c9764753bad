"""Users log in with their email address, unique regardless of case; one account per mailbox
(the canonical address, accounts/addresses.py, is unique too). Invites and invite emails."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.addresses import email_canonical


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)

    def get_by_natural_key(self, email: str) -> User:
        return self.get(email__iexact=email)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(_("email address"), max_length=254)
    # The mailbox behind `email` (every alias of one mailbox has the same), set on save when the
    # email is new or changed. NULL only for accounts that shared a mailbox with an older
    # account before the rule existed (migration 0004).
    email_canonical = models.CharField(
        _("canonical address"), max_length=254, unique=True, null=True, editable=False
    )
    # The client address Django saw at sign-up (REMOTE_ADDR): a risk signal for invite credits.
    signup_ip = models.GenericIPAddressField(_("sign-up IP"), null=True, blank=True)
    is_staff = models.BooleanField(_("staff status"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)
    # The personal invite code (URL-safe, random), issued on first use by accounts.services.
    invite_code = models.CharField(
        _("invite code"), max_length=32, unique=True, null=True, blank=True, editable=False
    )
    # The language chosen with the selector; empty means "from the browser".
    language = models.CharField(
        _("language"), max_length=16, blank=True, choices=settings.LANGUAGES
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
        ]

    def __str__(self) -> str:
        return self.email

    @classmethod
    def from_db(cls, db, field_names, values):
        user = super().from_db(db, field_names, values)
        user._loaded_email = user.__dict__.get("email")  # never load a deferred field here
        return user

    def save(self, *args, **kwargs) -> None:
        """A new or changed email gets its canonical address; the unique index refuses a second
        account for one mailbox even where a form was skipped."""
        update_fields = kwargs.get("update_fields")
        writes_email = "email" not in self.get_deferred_fields() and (
            update_fields is None or "email" in update_fields
        )
        if writes_email and (
            self._state.adding or self.email != getattr(self, "_loaded_email", None)
        ):
            self.email_canonical = email_canonical(self.email)
            if update_fields is not None:
                kwargs["update_fields"] = {*update_fields, "email_canonical"}
        super().save(*args, **kwargs)
        self._loaded_email = self.email

    def clean(self) -> None:
        """Forms (the admin's among them) refuse a second account for one mailbox with a
        message on the address, before the unique index would refuse it with an error."""
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()
        taken = self.__class__.objects.filter(email_canonical=email_canonical(self.email))
        if self.email and taken.exclude(pk=self.pk).exists():
            raise ValidationError(
                {"email": _("Another account already uses this mailbox (an alias of it).")}
            )


class Invite(models.Model):
    """An account that signed up through someone's invite: at most one inviter per account.

    The credit (quota/invites.py) decides it once it is due: credited (credited_at set),
    void (earns nothing, with a reason), or held for staff (with a reason), who approve
    (credited) or reject it. The grants' source keys make a repeat credit a no-op.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        CREDITED = "credited", _("credited")
        VOID = "void", _("no credit")
        HELD = "held", _("held for staff")
        REJECTED = "rejected", _("rejected")

    inviter = models.ForeignKey(
        User, null=True, on_delete=models.SET_NULL, related_name="invites_sent"
    )
    invitee = models.OneToOneField(User, on_delete=models.CASCADE, related_name="invited_by")
    code = models.CharField(max_length=32)  # the code used, kept if the inviter is deleted
    created_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Why it was held or earned nothing (quota.invites: same_ip, same_network, burst,
    # disposable_domain), and when that was decided.
    reason = models.CharField(max_length=32, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    credited_at = models.DateTimeField(null=True, blank=True)
    # What the credit gave each side; 0 for the inviter once INVITE_CAP was reached.
    inviter_bytes = models.BigIntegerField(default=0)
    invitee_bytes = models.BigIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["inviter", "credited_at"], name="invite_inviter_credit_idx"),
            models.Index(
                fields=["created_at"],
                name="invite_pending_idx",
                condition=models.Q(status="pending"),
            ),
            models.Index(
                fields=["decided_at"], name="invite_held_idx", condition=models.Q(status="held")
            ),
        ]

    def __str__(self) -> str:
        return f"{self.inviter_id} invited {self.invitee_id}"


class InviteEmail(models.Model):
    """An attempt to send an invite email (rate limit: INVITE_EMAILS_PER_DAY attempts in any 24
    hours, refused ones included). Only `sent` ones leave; an address that already has an
    account gets nothing, and the inviter sees the same answer as for a new address."""

    class Outcome(models.TextChoices):
        SENT = "sent", _("sent")
        HAS_ACCOUNT = "has_account", _("not sent: the address has an account")
        SELF = "self", _("refused: own address")
        DUPLICATE = "duplicate", _("refused: already invited today")

    inviter = models.ForeignKey(User, on_delete=models.CASCADE, related_name="invite_emails")
    email = models.EmailField(max_length=254)
    sent_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.SENT)

    class Meta:
        indexes = [models.Index(fields=["inviter", "sent_at"], name="invite_email_sent_idx")]

    def __str__(self) -> str:
        return f"{self.inviter_id} -> {self.email}"


class AccountDeletion(models.Model):
    """An account's deletion (issue 19). Requested: the account is deactivated at once (no
    login, tokens revoked, its mirror address out of the gate map). Until `purge_after` the
    emailed undo link restores it; then its personal data is erased and the row says when.

    The user row itself is kept, anonymised, so the ledger (usage, grants, invite credits of
    other users) keeps its totals. One row per user: a second deletion after an undo reuses it.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending deletion")
        UNDONE = "undone", _("undone")
        ERASED = "erased", _("deleted")

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="deletion")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    requested_at = models.DateTimeField(default=timezone.now)
    purge_after = models.DateTimeField()
    # Staff who ran it (audited in the dashboard), or NULL when the user did.
    requested_by = models.ForeignKey(
        User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Random, checked with the signed undo link: a link from an earlier deletion is void.
    undo_nonce = models.CharField(max_length=64)
    # The API tokens this deletion revoked, live again after an undo (still within expiry).
    revoked_token_ids = models.JSONField(default=list, blank=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["purge_after"],
                name="deletion_due_idx",
                condition=models.Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.status}"


class ErasedMailbox(models.Model):
    """A keyed hash (HMAC with SECRET_KEY) of the canonical address of an erased account that
    received a welcome bonus: the same mailbox signing up again gets no second one. Not the
    address: nothing here says who it was without the key and a guess."""

    digest = models.CharField(max_length=64, unique=True)
    erased_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.digest[:12]
