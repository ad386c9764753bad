"""The deletion email: what happened, when the data goes, and the link that undoes it."""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.urls import reverse

from accounts.language import language_for_user
from accounts.mail import email_render
from accounts.models import AccountDeletion

UNDO_SALT = "selfservice.deletion-undo"


def undo_token(*, deletion: AccountDeletion) -> str:
    """Signed with SECRET_KEY and bound to this deletion's nonce: a link from an earlier
    deletion of the same account, or one forged from the database alone, does not work."""
    return signing.dumps([deletion.pk, deletion.undo_nonce], salt=UNDO_SALT, compress=True)


def undo_url(*, deletion: AccountDeletion) -> str:
    path = reverse("account_undo_delete", kwargs={"token": undo_token(deletion=deletion)})
    return f"{settings.SITE_URL.rstrip('/')}{path}"


def deletion_email_send(*, deletion_id: int) -> bool:
    """Mail the account's owner (in their language) that it was deleted, with the undo link.
    Nothing is sent once the deletion was undone or the account erased."""
    deletion = (
        AccountDeletion.objects.select_related("user")
        .filter(pk=deletion_id, status=AccountDeletion.Status.PENDING)
        .first()
    )
    if deletion is None:
        return False
    user = deletion.user
    context = {
        "undo_url": undo_url(deletion=deletion),
        "purge_after": deletion.purge_after,
        "by_staff": deletion.requested_by_id is not None,
        "days": settings.ACCOUNT_DELETE_GRACE_DAYS,
    }
    subject, body = email_render(
        template="selfservice/email/deletion",
        context=context,
        language=language_for_user(user),
    )
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])
    return True
