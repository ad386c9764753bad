"""ACCOUNT_DELETE_GRACE_DAYS: a readable refusal for wrong and hostile values."""

from __future__ import annotations

import pytest

from tests.test_settings import start_django


@pytest.mark.parametrize(
    "value, message",
    [
        ("seven", "ACCOUNT_DELETE_GRACE_DAYS must be a whole number"),
        ("7.5", "ACCOUNT_DELETE_GRACE_DAYS must be a whole number"),
        ("0", "ACCOUNT_DELETE_GRACE_DAYS must be a whole number of days from 1 to 365"),
        ("-3", "from 1 to 365"),
        ("366", "from 1 to 365"),
        ("9" * 40, "from 1 to 365"),
        ("7; rm -rf /", "must be a whole number"),
    ],
)
def test_wrong_values_stop_start_up(tmp_path, value, message):
    env = {"VAR_DIR": str(tmp_path), "DATABASE_URL": "", "REDIS_URL": ""}
    result = start_django({**env, "ACCOUNT_DELETE_GRACE_DAYS": value})
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize("value", ["1", "30", " 365 ", ""])
def test_right_values_start(tmp_path, value):
    env = {"VAR_DIR": str(tmp_path), "DATABASE_URL": "", "REDIS_URL": ""}
    result = start_django({**env, "ACCOUNT_DELETE_GRACE_DAYS": value})
    assert result.returncode == 0, result.stderr
