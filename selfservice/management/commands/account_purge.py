from django.core.management.base import BaseCommand

from selfservice.erasure import accounts_purge_due


class Command(BaseCommand):
    help = "Erase the personal data of accounts whose deletion grace period is over."

    def handle(self, *args, **options) -> None:
        erased = accounts_purge_due()
        self.stdout.write(f"erased {erased} account(s)")
