"""UPSTREAMS and UPSTREAM_DENY: wrong and hostile values are refused with a message that names
the setting; names are lookup keys only (DNS names with a dot), never addresses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.upstreams import UpstreamError, env_key, parse_deny, parse_upstreams

ROOT = Path(__file__).resolve().parent.parent


def test_pairs_with_credentials_per_upstream(tmp_path) -> None:
    secret = tmp_path / "quay.pw"
    secret.write_text("s3cret\n")
    env = {
        "UPSTREAM_GHCR_IO_USERNAME": "bot",
        "UPSTREAM_GHCR_IO_PASSWORD": "pw",
        "UPSTREAM_QUAY_IO_USERNAME": "robot",
        "UPSTREAM_QUAY_IO_PASSWORD_FILE": str(secret),
    }
    ups = parse_upstreams(
        " ghcr.io=https://ghcr.io , quay.io=https://quay.io/,registry.k8s.io=https://registry.k8s.io,",
        env,
    )
    assert [(u.name, u.url, u.username, u.password) for u in ups] == [
        ("ghcr.io", "https://ghcr.io", "bot", "pw"),
        ("quay.io", "https://quay.io", "robot", "s3cret"),
        ("registry.k8s.io", "https://registry.k8s.io", "", ""),
    ]
    assert env_key("registry.k8s.io") == "REGISTRY_K8S_IO"
    assert parse_upstreams("", {}) == ()


@pytest.mark.parametrize(
    "text, message",
    [
        ("ghcr.io", "is not name=url"),
        ("ghcr=https://ghcr.io", "not a registry host name"),  # no dot: a Docker Hub namespace
        ("GHCR.io=https://ghcr.io", "not a registry host name"),
        ("ghcr.io:443=https://ghcr.io", "not a registry host name"),
        ("../x.io=https://x.io", "not a registry host name"),
        ('a"b.io=https://x.io', "not a registry host name"),
        ("a;b.io=https://x.io", "not a registry host name"),
        ("x." + "a" * 70 + ".io=https://x.io", "not a registry host name"),
        ("docker.io=https://registry-1.docker.io", "docker.io is UPSTREAM_URL"),
        ("ghcr.io=https://ghcr.io,ghcr.io=https://ghcr.io", "listed twice"),
        ("ghcr.io=ftp://ghcr.io", "url must be"),
        ("ghcr.io=https://ghcr.io/v2/", "url must be"),
        ("ghcr.io=https://ghcr.io;evil", "url must be"),
        ("ghcr.io=", "url must be"),
        (",".join(f"r{i}.io=https://r{i}.io" for i in range(33)), "at most 32"),
    ],
)
def test_wrong_and_hostile_upstreams_are_refused(text, message) -> None:
    with pytest.raises(UpstreamError, match=message):
        parse_upstreams(text, {})


def test_half_a_credential_is_refused(tmp_path) -> None:
    with pytest.raises(UpstreamError, match="UPSTREAM_GHCR_IO_USERNAME"):
        parse_upstreams("ghcr.io=https://ghcr.io", {"UPSTREAM_GHCR_IO_USERNAME": "bot"})
    with pytest.raises(UpstreamError, match="not both"):
        parse_upstreams(
            "ghcr.io=https://ghcr.io",
            {"UPSTREAM_GHCR_IO_PASSWORD": "a", "UPSTREAM_GHCR_IO_PASSWORD_FILE": "/x"},
        )
    with pytest.raises(UpstreamError, match="PASSWORD_FILE"):
        parse_upstreams(
            "ghcr.io=https://ghcr.io",
            {"UPSTREAM_GHCR_IO_PASSWORD_FILE": str(tmp_path / "missing")},
        )


def test_deny_entries() -> None:
    names = {"docker.io", "ghcr.io"}
    assert parse_deny("ghcr.io/org/img, docker.io/nginx,docker.io/library/nginx", names) == (
        "docker.io/library/nginx",
        "ghcr.io/org/img",
    )
    for bad in (
        "quay.io/x/y",
        "ghcr.io/",
        "ghcr.io/Org/Img",
        "ghcr.io/a/../b",
        "org/img",
        "ghcr.io/a b",
    ):
        with pytest.raises(UpstreamError, match="UPSTREAM_DENY"):
            parse_deny(bad, names)


@pytest.mark.parametrize(
    "env",
    [
        {"UPSTREAMS": "ghcr=https://ghcr.io"},
        {"UPSTREAMS": "ghcr.io=https://ghcr.io", "UPSTREAM_DENY": "quay.io/a/b"},
    ],
)
def test_settings_refuse_to_start_naming_the_setting(env) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; from django.conf import settings; settings.UPSTREAMS",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ConfigError" in result.stderr and (
        "UPSTREAMS" in result.stderr or "UPSTREAM_DENY" in result.stderr
    )


def test_ratelimit_probes_and_headers() -> None:
    from config.upstreams import parse_probes
    from edge.allowance import parse_ratelimit

    names = {"docker.io", "ghcr.io"}
    assert parse_probes(["docker.io=ratelimitpreview/test:latest"], names) == {
        "docker.io": ("ratelimitpreview/test", "latest")
    }
    for bad in ("quay.io=a/b:c", "docker.io=a/b", "docker.io=A/b:c", "docker.io=a/b:c;d", "x"):
        with pytest.raises(UpstreamError, match="UPSTREAM_RATELIMIT_PROBES"):
            parse_probes([bad], names)
    assert parse_ratelimit("100;w=21600") == (100, 21600)
    assert parse_ratelimit(" 76 ; w=21600") == (76, 21600)
    assert parse_ratelimit("5000") == (5000, None)
    for bad in (None, "", "-1", "abc", "1e9;w=x"[:0]):
        assert parse_ratelimit(bad) == (None, None)
