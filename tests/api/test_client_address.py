"""DRF's anonymous throttle keys on the client address TRUSTED_PROXY_COUNT picks (NUM_PROXIES),
never on the whole client-supplied X-Forwarded-For."""

from __future__ import annotations

import pytest
from rest_framework.settings import api_settings

pytestmark = pytest.mark.django_db
SCHEMA = "/api/schema/"  # open to anyone, so the anonymous throttle is what answers


@pytest.fixture
def throttled(settings):
    from rest_framework.throttling import AnonRateThrottle

    # Restored as it was: this teardown runs before `settings` puts REST_FRAMEWORK back.
    original = AnonRateThrottle.THROTTLE_RATES

    def configure(proxies: int) -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "NUM_PROXIES": proxies,
            "DEFAULT_THROTTLE_RATES": {"user": "1000/min", "anon": "3/min"},
        }
        # The throttle class read its rates when it was imported.
        from rest_framework.throttling import AnonRateThrottle

        AnonRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES

    yield configure
    AnonRateThrottle.THROTTLE_RATES = original


@pytest.mark.parametrize(
    ("proxies", "forged"),
    [
        # No proxy: REMOTE_ADDR, whatever the header says.
        (0, ["198.51.100.1", "198.51.100.2", "a, b, c", "", "198.51.100.3"]),
        # One proxy: the last entry, which that proxy appended; the client's own are ignored.
        (1, [f"{n}.0.0.1, 203.0.113.7" for n in range(1, 6)]),
    ],
)
def test_a_forged_forwarded_for_does_not_dodge_the_anonymous_throttle(
    client, throttled, proxies, forged
):
    throttled(proxies)
    statuses = [
        client.get(SCHEMA, HTTP_X_FORWARDED_FOR=value, REMOTE_ADDR="192.0.2.10").status_code
        for value in forged
    ]
    assert statuses == [200, 200, 200, 429, 429]


def test_behind_one_proxy_two_clients_are_two_addresses(client, throttled):
    throttled(1)
    first = [
        client.get(SCHEMA, HTTP_X_FORWARDED_FOR="203.0.113.7", REMOTE_ADDR="127.0.0.1").status_code
        for _ in range(4)
    ]
    assert first == [200, 200, 200, 429]
    other = client.get(SCHEMA, HTTP_X_FORWARDED_FOR="203.0.113.8", REMOTE_ADDR="127.0.0.1")
    assert other.status_code == 200
