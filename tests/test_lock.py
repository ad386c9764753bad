"""The lock: every Python dependency pinned with hashes, consistent with pyproject.toml's
ranges, and what this environment runs is exactly what the lock says (`make venv` installs
requirements/dev.txt with --require-hashes; the image installs requirements/base.txt).
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)")


def lock(name: str) -> dict[str, tuple[str, int]]:
    """{canonical name: (version, number of hashes)} of a compiled requirements file."""
    pins: dict[str, tuple[str, int]] = {}
    current = None
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
        elif line.strip() and not line.lstrip().startswith(("#", "--hash")):
            raise AssertionError(f"{name}: unexpected line {line!r}")
    return pins


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("name", ["base.txt", "dev.txt"])
def test_every_locked_dependency_is_pinned_with_a_hash(name):
    pins = lock(name)
    assert len(pins) > 10
    assert [p for p, (_v, hashes) in pins.items() if hashes == 0] == []


@pytest.mark.parametrize(
    ("name", "groups"), [("base.txt", ["dependencies"]), ("dev.txt", ["dependencies", "dev"])]
)
def test_the_lock_satisfies_pyprojects_ranges(name, groups):
    pins = lock(name)
    spec = project()
    wanted = [
        Requirement(r)
        for group in groups
        for r in (
            spec["dependencies"]
            if group == "dependencies"
            else spec["optional-dependencies"][group]
        )
    ]
    for req in wanted:
        key = canonicalize_name(req.name)
        assert key in pins, f"{req.name} is not in requirements/{name}: run make upgrade"
        assert req.specifier.contains(pins[key][0], prereleases=True), (
            f"{req.name}=={pins[key][0]} in requirements/{name} is outside {req.specifier}: "
            "run make upgrade"
        )


def test_runtime_and_development_locks_agree():
    base, dev = lock("base.txt"), lock("dev.txt")
    assert {k: v for k, (v, _h) in base.items()} == {k: dev[k][0] for k in base}


def test_this_environment_runs_exactly_the_locked_versions():
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    different = {
        name: (version, installed.get(name))
        for name, (version, _h) in lock("dev.txt").items()
        if installed.get(name) != version
    }
    assert different == {}, "the venv differs from requirements/dev.txt: run make venv"


def test_the_image_installs_the_runtime_lock_with_hashes():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/base.txt" in text
