"""Test only (tests/ingest/test_crash.py), never set in production: INGEST_TEST_PAUSE=point:n
makes this process stop itself (SIGSTOP) the n-th time it passes ``point``, so the test kills it
exactly there. The meter's batches (ingest.batch): "read" (a batch read, nothing written),
"commit" (all written, before COMMIT), "committed" (after COMMIT, before the next batch). The
status page's steps (ingest.activity): "activity" (its activity written, before its position
moves and COMMIT)."""

from __future__ import annotations

import os
import signal

_PAUSE_AT = os.environ.get("INGEST_TEST_PAUSE", "").partition(":")[::2]
_passed: dict[str, int] = {}


def pause_point(point: str) -> None:
    if _PAUSE_AT[0] != point:  # unset: one string comparison per batch
        return
    _passed[point] = _passed.get(point, 0) + 1
    if _passed[point] == int(_PAUSE_AT[1] or 1):
        os.kill(os.getpid(), signal.SIGSTOP)
