"""Reads for the operators' metrics, all at scrape time from the database: every gunicorn
worker answers the same, whichever one Prometheus reaches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, Sum
from django.utils import timezone

from accelerator.models import Tenant
from accounts.models import Invite
from edge.models import EdgeState, UpstreamAllowance
from ingest.models import EdgeIngest, EdgeTraffic
from ops.models import TaskFailure
from quota.models import UsageBucket

TOP_TENANTS = 20
# Cache statuses of a blob GET that read the upstream (a fill); HEADs of cold blobs go
# upstream too but read no body (BYPASS is only ever a HEAD or a non-GET).
UPSTREAM_READS = ("MISS", "EXPIRED")


@dataclass(frozen=True)
class Snapshot:
    now: datetime
    ingest: list[EdgeIngest]
    edges: list[EdgeState]
    traffic: list[EdgeTraffic]
    tenants: dict[str, int]
    invites: dict[str, int]
    failures: list[TaskFailure]
    top_tenants: list[tuple[str, int]]
    allowances: tuple[UpstreamAllowance, ...] = ()


def ops_snapshot() -> Snapshot:
    now = timezone.now()
    counts = Tenant.objects.aggregate(
        active=Count("pk", filter=Q(state=Tenant.State.ACTIVE, exhausted_at__isnull=True)),
        exhausted=Count("pk", filter=Q(state=Tenant.State.ACTIVE, exhausted_at__isnull=False)),
        suspended=Count("pk", filter=Q(state=Tenant.State.SUSPENDED)),
    )
    invites = dict.fromkeys(Invite.Status.values, 0)
    for row in Invite.objects.values("status").annotate(n=Count("pk")):
        invites[row["status"]] = row["n"]
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    top = (
        UsageBucket.objects.filter(hour__gte=month)
        .values("tenant_id")
        .annotate(b=Sum("bytes"))
        .order_by("-b")[:TOP_TENANTS]
    )
    return Snapshot(
        now=now,
        ingest=list(EdgeIngest.objects.order_by("edge")),
        edges=list(EdgeState.objects.order_by("edge")),
        traffic=list(EdgeTraffic.objects.order_by("edge", "status", "cache")),
        tenants={k: v or 0 for k, v in counts.items()},
        invites=invites,
        failures=list(TaskFailure.objects.order_by("task")),
        # By id: a label is the tenant's credential (its mirror address), never exported.
        top_tenants=[(str(r["tenant_id"]), r["b"] or 0) for r in top],
        allowances=tuple(
            UpstreamAllowance.objects.filter(limit__isnull=False).order_by("edge", "registry")
        ),
    )
