"""The edge's least-privilege PostgreSQL role: what an edge's worker may touch, in one place.

An edge's worker ingests its access log (usage and ingestion rows) and renders the gate map
(the tenants' labels and states). It never needs users, email addresses, sessions, tokens or
invites, and with ACCELERATOR_ROLE=edge it hands enforcement to the control plane.
"""

from __future__ import annotations

import re

from django.apps import apps
from django.db import connection

# Read only: the gate table and the labels (ingestion charges rotated-away labels too).
READ = ["accelerator.Tenant", "accelerator.RetiredLabel"]
# Read only these columns: the gate leaves out deactivated accounts (a deletion in its grace
# period), so it joins the user's id and is_active, and nothing else of the user.
READ_COLUMNS = {"accounts.User": ["id", "is_active"]}
# Read and write: usage, ingestion's bookkeeping, the tenants' activity (what the edge saw),
# the edge's state and its upstream allowance readings, task failures.
WRITE = [
    "quota.UsageBucket",
    "quota.UsageMonth",
    "ingest.EdgeIngest",
    "ingest.EdgeTraffic",
    "ingest.LogFile",
    "ingest.MalformedCount",
    "ingest.MalformedSample",
    "ingest.UnknownTraffic",
    "edge.EdgeState",
    "edge.UpstreamAllowance",
    "accelerator.TenantActivity",
    "ops.TaskFailure",
]
ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def edge_role_grant(*, role: str, password: str) -> list[str]:
    """Create (or update) the role and grant exactly READ and WRITE. Idempotent. Returns the
    tables granted. The caller runs it as the database owner."""
    if not ROLE_RE.match(role):
        raise ValueError(f"the role name must match {ROLE_RE.pattern}, not {role!r}")
    if len(password) < 16:
        raise ValueError("the role's password must be at least 16 characters")
    tables = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        verb = "ALTER" if cursor.fetchone() else "CREATE"
        # Identifiers cannot be parameters: the name is checked by ROLE_RE above.
        cursor.execute(f"{verb} ROLE {role} LOGIN PASSWORD %s", [password])  # noqa: S608
        database = connection.ops.quote_name(connection.settings_dict["NAME"])
        cursor.execute(f"GRANT CONNECT ON DATABASE {database} TO {role}")
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        for label, privileges in [(m, "SELECT") for m in READ] + [
            (m, "SELECT, INSERT, UPDATE, DELETE") for m in WRITE
        ]:
            meta = apps.get_model(label)._meta
            table = meta.db_table
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"GRANT {privileges} ON {quoted} TO {role}")
            # A table keyed by another table's id (TenantActivity) has no sequence of its own.
            cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, meta.pk.column])
            sequence = cursor.fetchone()[0]
            if sequence and privileges != "SELECT":
                cursor.execute(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {role}")
            tables.append(table)
        for label, columns in READ_COLUMNS.items():
            table = apps.get_model(label)._meta.db_table
            quoted_columns = ", ".join(connection.ops.quote_name(c) for c in columns)
            cursor.execute(
                f"GRANT SELECT ({quoted_columns}) ON {connection.ops.quote_name(table)} TO {role}"
            )
            tables.append(table)
    return tables
