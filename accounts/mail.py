"""Our own transactional emails (invites, quota notices), rendered in the reader's language."""

from __future__ import annotations

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation


def email_render(*, template: str, context: dict, language: str) -> tuple[str, str]:
    """(subject, body) from `<template>_subject.txt` and `<template>_body.txt` in `language`.

    The subject is one line with the brand prefix, as allauth's own mails have.
    """
    with translation.override(language):
        subject = render_to_string(f"{template}_subject.txt", context)
        body = render_to_string(f"{template}_body.txt", context)
        subject = f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{' '.join(subject.split())}"
    return subject, body
