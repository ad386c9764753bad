"""Where ingestion keeps its place in each edge's access log, and what staff see of it.

The usage itself goes to the ledger (quota.UsageBucket) through quota.usage.usage_apply, in
the same transaction that moves LogFile.position: a crash replays at most an uncommitted
batch, and a replay changes nothing.
"""

from __future__ import annotations

from django.db import models


class EdgeIngest(models.Model):
    """One row per edge: ingestion health for the dashboard. Its row lock is the ingest lock:
    a batch runs only while its transaction holds it, so two workers never read one log at
    once."""

    edge = models.CharField(max_length=64, unique=True)
    path = models.CharField(max_length=1024, blank=True)  # the log path last given
    lines_total = models.BigIntegerField(default=0)  # well-formed lines ingested
    bytes_total = models.BigIntegerField(default=0)  # log bytes consumed
    malformed_total = models.BigIntegerField(default=0)
    unknown_requests_total = models.BigIntegerField(default=0)
    # Rotated files that vanished before they were seen finished (lines may be lost).
    files_lost = models.IntegerField(default=0)
    bytes_behind = models.BigIntegerField(default=0)
    seconds_behind = models.FloatField(default=0)  # health, not money: a float is fine
    lines_per_second = models.FloatField(default=0)  # of the last run that read anything
    last_line_at = models.DateTimeField(null=True, blank=True)  # ts of the last line read
    last_batch_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.edge


class EdgeTraffic(models.Model):
    """What an edge served, per response status and cache status, as ingested from its access
    log (every well-formed line, tenant or not). Totals since the first line: the operators'
    counters (ops.metrics exports them)."""

    edge = models.CharField(max_length=64)
    status = models.IntegerField()
    cache = models.CharField(max_length=32, blank=True)  # nginx's $upstream_cache_status
    requests = models.BigIntegerField(default=0)
    bytes_sent = models.BigIntegerField(default=0)  # headers and body, as nginx counted them

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["edge", "status", "cache"], name="ingest_traffic_key"),
        ]

    def __str__(self) -> str:
        return f"{self.edge} {self.status} {self.cache or '-'}: {self.requests}"


class LogFile(models.Model):
    """A cursor: how far one physical log file has been ingested.

    A file is known by (device, inode) and by a fingerprint of its head, so a rename, a
    copytruncate and a reused inode are all told apart. ``current`` is the file at the edge's
    log path; ``rotated`` files are finished (before the current one, each run) and become
    ``done`` once they have stopped growing.
    """

    class State(models.TextChoices):
        CURRENT = "current"
        ROTATED = "rotated"
        DONE = "done"

    edge = models.CharField(max_length=64)
    state = models.CharField(max_length=8, choices=State.choices, default=State.CURRENT)
    path = models.CharField(max_length=1024)  # where it was last seen
    device = models.BigIntegerField()
    inode = models.BigIntegerField()
    fp_length = models.IntegerField(default=0)
    fp_digest = models.CharField(max_length=64)
    position = models.BigIntegerField(default=0)  # always just after a newline
    # How far the status page's pass (ingest.activity) has read: never past ``position``.
    activity_position = models.BigIntegerField(default=0)
    size = models.BigIntegerField(default=0)  # at the last look
    grew_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lost = models.BooleanField(default=False)  # vanished before it was seen finished

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["edge"],
                condition=models.Q(state="current"),
                name="ingest_one_current_file_per_edge",
            ),
            models.CheckConstraint(
                condition=models.Q(position__gte=0), name="ingest_position_not_negative"
            ),
        ]
        indexes = [models.Index(fields=["edge", "state"], name="ingest_file_edge_state_idx")]

    def __str__(self) -> str:
        return f"{self.edge}:{self.path} ({self.state}) @{self.position}"


class MalformedCount(models.Model):
    """Malformed lines per edge and kind (json, field, encoding, too_long)."""

    edge = models.CharField(max_length=64)
    kind = models.CharField(max_length=16)
    count = models.BigIntegerField(default=0)
    last_seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["edge", "kind"], name="ingest_malformed_key"),
        ]

    def __str__(self) -> str:
        return f"{self.edge} {self.kind}: {self.count}"


class MalformedSample(models.Model):
    """The last few malformed lines of an edge (older ones are deleted as new ones arrive)."""

    edge = models.CharField(max_length=64)
    seen_at = models.DateTimeField()
    path = models.CharField(max_length=1024)
    offset = models.BigIntegerField()
    kind = models.CharField(max_length=16)
    reason = models.TextField()
    text = models.TextField()  # the first bytes, undecodable ones escaped

    class Meta:
        indexes = [models.Index(fields=["edge", "-id"], name="ingest_sample_edge_idx")]

    def __str__(self) -> str:
        return f"{self.edge} {self.kind} @{self.offset}"


class UnknownTraffic(models.Model):
    """Requests whose label is no current tenant's: never issued, mistyped, or retired before
    the line was stamped (those are charged to the tenant the label was issued to as well).
    Per edge, label and UTC day; how staff spot misconfigured clients, which otherwise fall
    back to Docker Hub without a word."""

    edge = models.CharField(max_length=64)
    label = models.CharField(max_length=63, blank=True)  # "" = no label in the host
    day = models.DateField()
    retired = models.BooleanField(default=False)  # a rotated-away label of some tenant
    requests = models.BigIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)  # 200/206 body bytes (charged when retired)
    last_hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["edge", "label", "day"], name="ingest_unknown_key"),
        ]
        indexes = [models.Index(fields=["day"], name="ingest_unknown_day_idx")]

    def __str__(self) -> str:
        return f"{self.edge} {self.label!r} {self.day}: {self.requests}"
