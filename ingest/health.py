"""An edge's ingestion health as staff see it (EdgeIngest): the last error, and after each run
how far behind it is and how fast it went. The per-batch totals are written with the batch
(ingest.batch), lost files with the rotation that found them (ingest.files)."""

from __future__ import annotations

from django.utils import timezone

from ingest.models import EdgeIngest, LogFile


def health_note_error(*, edge: str, message: str) -> None:
    EdgeIngest.objects.filter(edge=edge).update(
        last_error=message[:2000], last_error_at=timezone.now()
    )


def health_after_run(*, edge: str, lines: int, lines_per_second: float, caught_up: bool) -> int:
    """Record how far behind and how fast after a run. Returns the bytes still unread."""
    now = timezone.now()
    behind = 0
    for f in LogFile.objects.filter(edge=edge).exclude(state=LogFile.State.DONE):
        behind += max(0, f.size - f.position)
    health = EdgeIngest.objects.get(edge=edge)
    updates: dict = {"last_run_at": now, "bytes_behind": behind}
    if not caught_up and health.last_line_at:
        updates["seconds_behind"] = max(0.0, (now - health.last_line_at).total_seconds())
    else:
        updates["seconds_behind"] = 0.0
    if lines:
        updates["lines_per_second"] = lines_per_second
    EdgeIngest.objects.filter(edge=edge).update(**updates)
    return behind
