"""Users log in with their email address, unique regardless of case."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


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

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()


class Invite(models.Model):
    """An account that signed up through someone's invite: at most one inviter per account.

    Credited once (credited_at set) when the invitee has a verified email address and a first
    usage bucket with bytes > 0; the grants' source keys make a repeat credit a no-op.
    """

    inviter = models.ForeignKey(
        User, null=True, on_delete=models.SET_NULL, related_name="invites_sent"
    )
    invitee = models.OneToOneField(User, on_delete=models.CASCADE, related_name="invited_by")
    code = models.CharField(max_length=32)  # the code used, kept if the inviter is deleted
    created_at = models.DateTimeField(default=timezone.now)
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
                condition=models.Q(credited_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.inviter_id} invited {self.invitee_id}"


class InviteEmail(models.Model):
    """An invite email a user sent (rate limit: INVITE_EMAILS_PER_DAY in any 24 hours)."""

    inviter = models.ForeignKey(User, on_delete=models.CASCADE, related_name="invite_emails")
    email = models.EmailField(max_length=254)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["inviter", "sent_at"], name="invite_email_sent_idx")]

    def __str__(self) -> str:
        return f"{self.inviter_id} -> {self.email}"
