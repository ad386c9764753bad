"""deploy/: the systemd units and the compose file refer to things that exist.

No Docker engine or systemd PID 1 runs here, so these are structural checks with the real
readers where there is one: `systemd-analyze verify` for every unit (the executables of the
units pointed at this checkout), PyYAML for the compose file. Every command a unit or a
service runs must be a real management command, Celery app, queue, binary or path; every
variable they set must be one the settings read.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from configparser import ConfigParser
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

from config.edges import edge_queue
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
SETTINGS_SOURCE = "".join(
    (ROOT / "config" / name).read_text() for name in ("settings.py", "production.py")
)
# Read by programs other than Django: gunicorn's config, Python itself, PostgreSQL's image.
NOT_DJANGO = {"WEB_CONCURRENCY", "GUNICORN_THREADS", "PYTHONUNBUFFERED"}


def read_setting_names() -> set[str]:
    names = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', SETTINGS_SOURCE))
    names |= set(re.findall(r'os\.environ\.get\("([A-Z0-9_]+)"', SETTINGS_SOURCE))
    names |= set(re.findall(r'^\s+"([A-Z0-9_]+)",', SETTINGS_SOURCE, re.M))  # REQUIRED_ENV
    gunicorn = (DEPLOY / "gunicorn.conf.py").read_text()
    names |= set(re.findall(r'os\.environ\.get\("([A-Z0-9_]+)"', gunicorn))
    return names


def management_command(argv: list[str]) -> str | None:
    if "manage.py" in " ".join(argv[:3]):
        idx = next(i for i, a in enumerate(argv) if a.endswith("manage.py"))
        return argv[idx + 1]
    return None


def check_command(argv: list[str], where: str) -> None:
    """A command line of a unit or service names real things."""
    name = management_command(argv)
    if name is not None:
        assert name in get_commands(), f"{where}: no management command {name!r}"
    if any(Path(a).name == "celery" for a in argv[:2]):
        assert "-A" in argv and argv[argv.index("-A") + 1] == "config", where
    for arg in argv:
        if arg.startswith("deploy/"):
            assert (ROOT / arg).exists(), f"{where}: {arg} does not exist"
    if "gunicorn" in Path(argv[0]).name:
        assert argv[1] == "config.wsgi" and (ROOT / "config" / "wsgi.py").exists(), where


# --- systemd --------------------------------------------------------------------------------


def unit(name: str) -> ConfigParser:
    parser = ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    # Keys such as ExecStart may repeat; ConfigParser keeps the last, which is enough here.
    parser.read_string(
        "\n".join(
            line for line in (SYSTEMD / name).read_text().splitlines() if not line.startswith("#")
        )
    )
    return parser


def exec_lines(name: str) -> list[list[str]]:
    return [
        shlex.split(line.split("=", 1)[1])
        for line in (SYSTEMD / name).read_text().splitlines()
        if re.match(r"^Exec(Start|StartPre|Reload)=", line)
    ]


UNITS = sorted(p.name for p in SYSTEMD.iterdir())
EDGE_UNITS = [
    "accelerator-edge-render@.service",
    "accelerator-edge@.service",
    "accelerator-registry@.service",
    "accelerator-edge-token@.service",
    "accelerator-edge-verify@.service",
    "accelerator-edge-worker@.service",
]


def test_the_set_of_units():
    assert {
        "accelerator-web.service",
        "accelerator-worker.service",
        "accelerator-beat.service",
        "accelerator-edge-stack@.target",
        *EDGE_UNITS,
    } <= set(UNITS)
    wants = unit("accelerator-edge-stack@.target")["Unit"]["Wants"].split()
    assert sorted(wants) == sorted(u.replace("@.", "@%i.") for u in EDGE_UNITS)


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_accepts_every_unit(name, tmp_path):
    """systemd's own parser, with the install path pointed at this checkout so that every
    executable a unit names must exist here."""
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed")
    for other in UNITS:  # units refer to each other (Requires=, After=, Wants=)
        text = (SYSTEMD / other).read_text().replace("/opt/accelerator", str(ROOT))
        (tmp_path / other).write_text(text)
    target = tmp_path / (name.replace("@.", "@east.") if "@." in name else name)
    if target.name != name:
        target.symlink_to(tmp_path / name)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    # Lines about the host's own units (not ours) are not this test's business.
    ours = [ln for ln in result.stderr.splitlines() if "accelerator" in ln]
    assert result.returncode == 0 and not ours, result.stderr


@pytest.mark.parametrize("name", [u for u in UNITS if u.endswith(".service")])
def test_every_unit_command_names_real_things(name):
    for argv in exec_lines(name):
        check_command(argv, name)


def test_edge_worker_consumes_exactly_its_edges_queue_and_knows_its_files():
    argv = exec_lines("accelerator-edge-worker@.service")[0]
    assert f"--queues={edge_queue('%i')}" in argv
    text = (SYSTEMD / "accelerator-edge-worker@.service").read_text()
    for line in ("EDGE_NAME=%i", "EDGE_RUN_DIR=", "EDGE_ACCESS_LOG="):
        assert f"Environment={line}" in text
    # The worker signals nginx: both run as the same user.
    assert (
        unit("accelerator-edge-worker@.service")["Service"]["User"]
        == (unit("accelerator-edge@.service")["Service"]["User"])
    )


def test_unit_environment_names_are_settings():
    names = read_setting_names()
    for name in UNITS:
        for line in (SYSTEMD / name).read_text().splitlines():
            if line.startswith("Environment="):
                key = line.split("=", 2)[1]
                assert key in names, f"{name}: {key} is not read by the settings"


def test_edge_nginx_runs_the_rendered_config_gracefully():
    service = unit("accelerator-edge@.service")["Service"]
    assert service["KillSignal"] == "SIGQUIT"
    assert "CAP_NET_BIND_SERVICE" in service["AmbientCapabilities"]
    start = exec_lines("accelerator-edge@.service")
    assert start[0][1:3] == ["-t", "-q"]  # ExecStartPre tests the config first
    assert "${EDGE_RUN_DIR}/nginx.conf" in start[1]


# --- compose --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_has_the_same_set_as_the_units(compose):
    services = compose["services"]
    assert set(services) == {
        "db",
        "redis",
        "migrate",
        "web",
        "worker",
        "beat",
        "edge-render",
        "edge",
        "registry",
        "edge-token",
        "edge-verify",
        "edge-worker",
    }
    beats = [n for n, s in services.items() if "beat" in s.get("command", [])]
    assert beats == ["beat"] and "deploy" not in services["beat"]  # one beat, no replicas


def test_compose_references_resolve(compose):
    services = compose["services"]
    volumes = set(compose["volumes"])
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        mode = service.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.split(":", 1)[1] in services
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name}: volume {source} is not declared"
    for name, service in services.items():
        if service.get("image", "").startswith("mirror-accelerator"):
            # Our image is built, never pulled from a registry.
            assert service.get("pull_policy") in {"build", "never"}, name
            assert ("build" in service) == (service["pull_policy"] == "build"), name
    build = services["web"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).is_file()
    assert (context / "manage.py").is_file()
    assert (DEPLOY / compose["x-app"]["env_file"]).name == "accelerator.env"


def test_compose_commands_and_environment_are_real(compose):
    names = read_setting_names()
    for name, service in compose["services"].items():
        if "image" in service and not service["image"].startswith("mirror-accelerator"):
            continue  # postgres, redis: their own images
        command = service["command"]
        if command[:2] == ["sh", "-c"]:
            argvs = [shlex.split(part) for part in re.split(r"&&", command[2])]
            argvs = [a[1:] if a and a[0] == "exec" else a for a in argvs]
        else:
            argvs = [command]
        for argv in argvs:
            check_command(argv, f"compose service {name}")
        for key in service.get("environment", {}):
            assert key in names | NOT_DJANGO, f"{name}: {key} is not read by the settings"


def test_compose_edge_worker_queue_and_edges_agree(compose):
    services = compose["services"]
    edge_env = services["edge-worker"]["environment"]
    queue_arg = next(a for a in services["edge-worker"]["command"] if a.startswith("--queues="))
    assert queue_arg == f"--queues={edge_queue(edge_env['EDGE_NAME'])}"
    assert edge_env["EDGE_NAME"] in services["beat"]["environment"]["EDGES"].split(",")
    # The worker renders gate maps where nginx reads them, and can signal it.
    assert services["edge-worker"]["pid"] == "service:edge"
    nginx = services["edge"]["command"]
    assert nginx[nginx.index("-c") + 1] == f"{edge_env['EDGE_RUN_DIR']}/nginx.conf"
    assert services["edge"]["stop_signal"] == "SIGQUIT"
    assert {p.split(":")[0] for p in services["edge"]["ports"]} == {"80", "443"}
    # Only the edge is published; the rest is reached inside the compose network.
    assert [n for n, s in services.items() if "ports" in s] == ["edge"]


def test_dockerfile_installs_the_tested_binaries_and_runs_unprivileged():
    text = (DEPLOY / "Dockerfile").read_text()
    for package in ("nginx", "docker-registry", "gettext"):
        assert re.search(rf"apt-get install[^\n]*\b{package}\b", text), package
    assert "USER accelerator" in text
    assert "compilemessages" in text


# --- environment files ----------------------------------------------------------------------


def env_file(name: str) -> dict[str, str]:
    values = {}
    for line in (DEPLOY / name).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        # systemd keeps a trailing comment as part of the value: the examples have none.
        assert " #" not in value, f"{name}: inline comment in {line!r}"
        values[key] = value
    return values


def test_environment_examples_name_real_settings():
    names = read_setting_names() | {"DEPLOY_RENDER_ARGS"}  # read by the render unit
    for name in ("env.production.example", "edge.env.example"):
        for key in env_file(name):
            assert key in names, f"{name}: {key} is not read by the settings"


def test_production_example_passes_check_deploy_once_its_secrets_are_filled(tmp_path):
    import os
    import sys

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "EDGE", "MIRROR_", "EMAIL_", "SITE_", "CONSOLE_"))
    }
    env.update(env_file("env.production.example"))
    env.update(env_file("edge.env.example"))
    env.update(
        {
            "DJANGO_SECRET_KEY": "pF3q-9xZ_k2LmW8vRt6YhN1cJd0sBe4uGa7oQi5EnKy_TzXwVb",
            "VAR_DIR": str(tmp_path),
            "DJANGO_SETTINGS_MODULE": "config.settings",
        }
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # ...and without the secret key it refuses to start, naming it.
    env["DJANGO_SECRET_KEY"] = ""
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is not set" in result.stderr


def test_the_registry_never_sees_the_platforms_registry_variables(compose):
    """Distribution treats any REGISTRY_* variable as configuration: a platform setting named
    REGISTRY_STORAGE_DIR once made it exit with a YAML error (found by test_units_run), so no
    setting may carry that prefix, and the compose registry gets no environment at all."""
    assert not {n for n in read_setting_names() if n.startswith("REGISTRY_")}
    registry = compose["services"]["registry"]
    assert "env_file" not in registry and "environment" not in registry


# --- hardening (issue 14) -------------------------------------------------------------------

HARDENING = {
    "ProtectSystem": "strict",
    "ProtectHome": "true",
    "PrivateDevices": "true",
    "NoNewPrivileges": "true",
    "SystemCallFilter": "@system-service",
}


@pytest.mark.parametrize("name", [u for u in UNITS if u.endswith(".service")])
def test_every_service_is_hardened(name):
    service = unit(name)["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == value, f"{name}: {key}={service.get(key)}"
    assert service["ReadWritePaths"].strip(), name
    assert set(service["RestrictAddressFamilies"].split()) <= {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert re.fullmatch(r"\d+[KMG]", service["MemoryMax"]), name
    assert service["UMask"] == "0027"
    # Only nginx keeps a capability (binding 80/443).
    caps = service.get("CapabilityBoundingSet", "")
    assert caps == ("CAP_NET_BIND_SERVICE" if name == "accelerator-edge@.service" else ""), name


def _env_files(name: str) -> list[str]:
    return [
        line.split("=", 1)[1].lstrip("-")
        for line in (SYSTEMD / name).read_text().splitlines()
        if line.startswith("EnvironmentFile=")
    ]


def test_control_plane_and_edges_run_as_different_users_with_separate_environments():
    control = ["accelerator-web.service", "accelerator-worker.service", "accelerator-beat.service"]
    for name in control:
        assert unit(name)["Service"]["User"] == "accelerator"
        assert "/etc/accelerator/control.env" in _env_files(name)
    for name in EDGE_UNITS:
        assert unit(name)["Service"]["User"] == "accelerator-edge", name
        assert "/etc/accelerator/control.env" not in _env_files(name), name
    # Each edge process reads only what it needs.
    assert _env_files("accelerator-edge@.service") == ["/etc/accelerator/edge-%i.env"]
    assert _env_files("accelerator-registry@.service") == ["/etc/accelerator/edge-%i.env"]
    # The digest check: its listeners, cache directory and slice size, no secret of any kind.
    assert _env_files("accelerator-edge-verify@.service") == ["/etc/accelerator/edge-%i.env"]
    assert _env_files("accelerator-edge-token@.service") == [
        "/etc/accelerator/upstream.env",
        "/etc/accelerator/edge-%i.env",
    ]
    # The edge's files hold no control-plane secret.
    for example in ("edge-secrets.env.example", "upstream.env.example", "edge.env.example"):
        keys = set(env_file(example))
        assert not keys & {"DJANGO_SECRET_KEY", "EMAIL_HOST_PASSWORD", "EMAIL_HOST_USER"}
    assert "DJANGO_SECRET_KEY" in env_file("control.env.example")
    assert "EMAIL_HOST_PASSWORD" in env_file("control.env.example")


def test_nothing_runs_as_root_and_logrotate_is_a_static_root_owned_file(tmp_path):
    for name in UNITS:
        for line in (SYSTEMD / name).read_text().splitlines():
            if line.startswith("Exec"):
                assert not line.split("=", 1)[1].startswith(("+", "!")), f"{name}: {line}"
    static = DEPLOY / "logrotate" / "accelerator-edge"
    text = static.read_text()
    assert "@@" not in text and "su accelerator-edge accelerator-edge" in text
    assert "create 0640 accelerator-edge accelerator-edge" in text
    # logrotate's own parser accepts it (debug mode: nothing is rotated).
    require(shutil.which("logrotate") is not None, "logrotate is not installed")
    copy = tmp_path / "accelerator-edge"
    # This machine has no accelerator-edge user: the syntax is checked with one it has.
    copy.write_text(text.replace("accelerator-edge accelerator-edge", "nobody nogroup"))
    copy.chmod(0o644)
    done = subprocess.run(
        ["logrotate", "-d", "-s", str(tmp_path / "state"), str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "error:" not in done.stderr, done.stderr


def test_edge_role_settings_refuse_the_secret_key_and_need_no_smtp(tmp_path):
    import os
    import sys

    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "EDGE", "MIRROR_", "EMAIL_", "SITE_", "DATABASE_"))
    }
    env = base | env_file("common.env.example") | env_file("edge-secrets.env.example")
    env |= {
        "ACCELERATOR_ROLE": "edge",
        "VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REDIS_URL": "redis://127.0.0.1:6379/9",
    }
    probe = (
        "from django.conf import settings; "
        "print(len(settings.SECRET_KEY) >= 50, settings.EMAIL_BACKEND.rsplit('.', 2)[-2])"
    )
    run = [sys.executable, "-c", f"import django; django.setup(); {probe}"]
    ok = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["True", "dummy"]
    for hostile in ({"DJANGO_SECRET_KEY": "pF3q-9xZ_k2LmW8vRt6YhN1cJd0sBe4uGa7oQi5EnKy_Tz"}, {}):
        if not hostile:
            hostile = {"ACCELERATOR_ROLE": "control; rm -rf /"}
        bad = subprocess.run(
            run, cwd=ROOT, env=env | hostile, capture_output=True, text=True, timeout=120
        )
        assert bad.returncode != 0
        assert ("DJANGO_SECRET_KEY must not be given" in bad.stderr) or (
            "ACCELERATOR_ROLE must be all or edge" in bad.stderr
        ), bad.stderr


def test_environment_split_examples_name_real_settings():
    names = read_setting_names()
    for example in (
        "common.env.example",
        "control.env.example",
        "edge-secrets.env.example",
        "upstream.env.example",
    ):
        for key in env_file(example):
            assert key in names, f"{example}: {key} is not read by the settings"
