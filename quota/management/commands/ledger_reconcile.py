"""Twin of the periodic task quota.tasks.ledger_reconcile, for operators."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from quota import settlement


class Command(BaseCommand):
    help = (
        "Re-evaluate quota enforcement (new month, expired grants, missed batches), re-queue "
        "unsent threshold emails and credit invites whose first usage was missed."
    )

    def handle(self, *args, **options) -> None:
        result = settlement.ledger_reconcile()
        self.stdout.write(
            f"evaluated {result.evaluated} tenants, {result.exhausted} exhausted, "
            f"{result.notices_requeued} notices re-queued, "
            f"{result.invites_credited} invites credited"
        )
