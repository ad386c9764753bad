"""Batches' labels, as the tenants' activity (accelerator.activity): resolved once per write."""

from __future__ import annotations

from accelerator.activity import ActivityDelta, activity_record
from ingest import parser
from ingest.labels import labels_lookup


def activity_add(*, activity: parser.Activity) -> None:
    """Record what committed batches saw of each tenant. Unknown labels are dropped: they are
    no tenant's, and staff see their traffic as unknown already."""
    seen_by_label = activity.seen()
    if not seen_by_label:
        return
    current, gone = labels_lookup(sorted(seen_by_label))
    deltas = []
    for label, seen in seen_by_label.items():
        if label in current:
            tenant_id, retired = current[label], False
        elif label in gone:
            tenant_id, retired = gone[label][0], True
        else:
            continue
        deltas.append(
            ActivityDelta(
                tenant_id=tenant_id,
                retired=retired,
                first=seen.first,
                last=seen.last,
                agent=seen.agent,
                pulls=seen.pulls,
                refusals=seen.refusals,
            )
        )
    activity_record(deltas=deltas)
