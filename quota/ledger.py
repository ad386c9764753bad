"""Old import path, kept only until the modules below move to the new ones; nothing else here.

The ledger is split by subject (quota/periods.py, usage.py, month.py, grants.py,
enforcement.py, notices.py, invites.py, settlement.py, selectors.py). These names are re-exported
for code changed in parallel branches: quota/templatetags/quota.py and dashboard/views.py
(month_summary, usage_daily, grants_for_tenant, DayUsage, LedgerError) and ingest/services.py
(UsageDelta, usage_apply, usage_after_batch). Delete this module once they import the owners.
"""

from __future__ import annotations

from quota.errors import LedgerError
from quota.month import month_summary
from quota.selectors import DayUsage, grants_for_tenant, usage_daily
from quota.settlement import usage_after_batch
from quota.usage import UsageDelta, usage_apply

__all__ = [
    "DayUsage",
    "LedgerError",
    "UsageDelta",
    "grants_for_tenant",
    "month_summary",
    "usage_after_batch",
    "usage_apply",
    "usage_daily",
]
