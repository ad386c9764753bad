#!/bin/sh{% autoescape off %}
# Mirror Accelerator setup: Docker, containerd and podman on this machine pull Docker Hub
# images through your accelerator, {{ mirror_url }}
#
#   curl -fsSL {{ setup_url }} | sudo sh                        every client found here
#   curl -fsSL {{ setup_url }} | sudo sh -s -- docker           only Docker (or containerd, podman)
#   curl -fsSL {{ setup_url }} | sudo sh -s -- --dry-run        show what would change, change nothing
#
# It merges instead of overwriting (every other key of daemon.json is kept), backs up each file it
# changes, refuses a daemon.json that is not valid JSON without touching it, restarts a daemon
# only when its configuration changed, and is safe to run again. Environment: ROOT=<dir> puts
# every path under <dir>; NO_RESTART=1 restarts nothing.
set -eu

MIRROR_URL='{{ mirror_url }}'
MIRROR_HOST='{{ mirror_host }}'
MIRROR_DOMAIN='{{ mirror_domain }}'
MIRROR_INSECURE='{{ insecure }}'
CONSOLE_URL='{{ console_url }}'
AGENT='mirror-accelerator-setup/1'

ROOT=${ROOT:-}
NO_RESTART=${NO_RESTART:-0}
DRY_RUN=0
CLIENTS=''
RESTARTS=''
STAMP=$(date +%Y%m%d%H%M%S)

say() { printf '%s\n' "$*"; }
fail() {
    printf 'mirror-accelerator: %s\n' "$*" >&2
    exit 1
}
has() { command -v "$1" >/dev/null 2>&1; }

for arg in "$@"; do
    case $arg in
        --dry-run) DRY_RUN=1 ;;
        docker | containerd | podman) CLIENTS="$CLIENTS $arg" ;;
        *) fail "unknown argument: $arg (expected docker, containerd, podman or --dry-run)" ;;
    esac
done

if [ -n "$ROOT" ] && [ ! -d "$ROOT" ]; then
    fail "ROOT=$ROOT is not a directory"
fi

PY=''
if has python3; then PY=$(command -v python3); fi

TMP=$(mktemp -d 2>/dev/null || fail "cannot create a temporary directory")
trap 'rm -rf "$TMP"' EXIT HUP INT TERM

# install <target> <new file>: put the new content in place when it differs (backup first).
# Returns 0 when the target changed; in a dry run, prints the difference and returns 1.
install_file() {
    target=$1
    new=$2
    if [ -f "$target" ] && cmp -s "$target" "$new"; then
        say "unchanged: $target"
        return 1
    fi
    if [ "$DRY_RUN" = 1 ]; then
        say "would change: $target"
        old=/dev/null
        if [ -f "$target" ]; then old=$target; fi
        if has diff; then diff -u "$old" "$new" || true; else cat "$new"; fi
        return 1
    fi
    mkdir -p "$(dirname "$target")"
    if [ -f "$target" ]; then
        cp -p "$target" "$target.bak-$STAMP"
        say "backup: $target.bak-$STAMP"
    fi
    cp "$new" "$target.accel-new"
    mv -f "$target.accel-new" "$target"
    say "changed: $target"
    return 0
}

restart_later() { RESTARTS="$RESTARTS $1"; }

restart() {
    if [ "$NO_RESTART" = 1 ]; then
        say "not restarted (NO_RESTART=1): $1"
    elif has systemctl && [ -d /run/systemd/system ]; then
        say "restarting: $1"
        systemctl restart "$1"
    elif has service; then
        say "restarting: $1"
        service "$1" restart
    else
        say "restart $1 yourself to apply the change"
    fi
}

setup_docker() {
    conf="$ROOT/etc/docker/daemon.json"
    new="$TMP/daemon.json"
    if [ -f "$conf" ]; then
        [ -n "$PY" ] || fail "python3 is needed to merge $conf; add \"registry-mirrors\": [\"$MIRROR_URL\"] to it by hand"
        if ! "$PY" - "$conf" "$new" "$MIRROR_URL" "$MIRROR_DOMAIN" <<'PYTHON'
import json
import sys

path, out, mirror, domain = sys.argv[1:5]
with open(path, "rb") as f:
    raw = f.read()
try:
    text = raw.decode("utf-8")
    conf = json.loads(text) if text.strip() else {}
except ValueError as exc:
    sys.exit("%s is not valid JSON (%s); nothing was changed" % (path, exc))
if not isinstance(conf, dict):
    sys.exit("%s is not a JSON object; nothing was changed" % path)
mirrors = conf.get("registry-mirrors", [])
if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
    sys.exit('%s: "registry-mirrors" is not a list of addresses; nothing was changed' % path)
# Another address of this accelerator service (a rotated one) is replaced by the current one.
mine = "." + domain
def host(m):
    return m.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
if mirror in [m.rstrip("/") for m in mirrors] and not any(
    host(m).endswith(mine) and m.rstrip("/") != mirror for m in mirrors
):
    result = raw
else:
    kept = [m for m in mirrors if not host(m).endswith(mine)]
    conf["registry-mirrors"] = [mirror] + kept
    result = (json.dumps(conf, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
with open(out, "wb") as f:
    f.write(result)
PYTHON
        then
            fail "Docker not configured"
        fi
    else
        printf '{\n  "registry-mirrors": ["%s"]\n}\n' "$MIRROR_URL" >"$new"
    fi
    if install_file "$conf" "$new"; then
        if [ -n "$PY" ] && ! "$PY" -c 'import json, sys; json.load(open(sys.argv[1]))' "$conf"; then
            fail "$conf is not valid JSON after the change; restore $conf.bak-$STAMP"
        fi
        restart_later docker
    fi
}

setup_containerd() {
    hosts="$ROOT/etc/containerd/certs.d/docker.io/hosts.toml"
    new="$TMP/hosts.toml"
    {
        say 'server = "https://registry-1.docker.io"'
        say ''
        say "[host.\"$MIRROR_URL\"]"
        say '  capabilities = ["pull", "resolve"]'
    } >"$new"
    changed=0
    if install_file "$hosts" "$new"; then changed=1; fi

    conf="$ROOT/etc/containerd/config.toml"
    new="$TMP/config.toml"
    section='[plugins."io.containerd.grpc.v1.cri".registry]'
    pattern='^\[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\][[:space:]]*$'
    line='  config_path = "/etc/containerd/certs.d"'
    if [ ! -f "$conf" ]; then
        printf 'version = 2\n\n%s\n%s\n' "$section" "$line" >"$new"
    elif grep -q '^[[:space:]]*config_path[[:space:]]*=[[:space:]]*"/etc/containerd/certs.d/*"' "$conf"; then
        cp "$conf" "$new"
    elif grep -q '^[[:space:]]*config_path[[:space:]]*=[[:space:]]*""' "$conf"; then
        sed 's|^\([[:space:]]*\)config_path[[:space:]]*=[[:space:]]*""|\1config_path = "/etc/containerd/certs.d"|' "$conf" >"$new"
    elif grep -q '^[[:space:]]*config_path[[:space:]]*=' "$conf"; then
        say "note: $conf sets another config_path; put docker.io/hosts.toml under it (left as it is)"
        cp "$conf" "$new"
    elif grep -q "$pattern" "$conf"; then
        # Through the environment: awk -v would eat the pattern's backslashes.
        PAT=$pattern LINE=$line awk '{ print } $0 ~ ENVIRON["PAT"] { print ENVIRON["LINE"] }' "$conf" >"$new"
    else
        { cat "$conf"; printf '\n%s\n%s\n' "$section" "$line"; } >"$new"
    fi
    if install_file "$conf" "$new"; then changed=1; fi
    if [ "$changed" = 1 ]; then restart_later containerd; fi
}

setup_podman() {
    dropin="$ROOT/etc/containers/registries.conf.d/50-mirror-accelerator.conf"
    new="$TMP/podman.conf"
    {
        say '# Written by the Mirror Accelerator setup script.'
        say '[[registry]]'
        say 'prefix = "docker.io"'
        say 'location = "registry-1.docker.io"'
        say ''
        say '[[registry.mirror]]'
        say "location = \"$MIRROR_HOST\""
        if [ "$MIRROR_INSECURE" = true ]; then say 'insecure = true'; fi
    } >"$new"
    # podman reads its configuration on every pull: no daemon to restart.
    install_file "$dropin" "$new" || true
}

if [ -z "$CLIENTS" ]; then
    if has dockerd || [ -d "$ROOT/etc/docker" ]; then CLIENTS="$CLIENTS docker"; fi
    if [ -f "$ROOT/etc/containerd/config.toml" ] || has nerdctl || has crictl; then
        CLIENTS="$CLIENTS containerd"
    fi
    if has podman || [ -d "$ROOT/etc/containers" ]; then CLIENTS="$CLIENTS podman"; fi
    if [ -z "$CLIENTS" ]; then
        fail "found no Docker, containerd or podman here; name one: sh -s -- docker"
    fi
fi

for client in $CLIENTS; do
    say "== $client"
    "setup_$client"
done

if [ "$DRY_RUN" = 1 ]; then
    say "dry run: nothing was written, nothing restarted"
    exit 0
fi

for service in $RESTARTS; do
    restart "$service"
done

# A first request through the accelerator: the console turns to "Connected".
if has curl; then
    pinged=$(curl -fsS -o /dev/null -w '%{http_code}' -A "$AGENT" "$MIRROR_URL/v2/" 2>/dev/null || true)
elif has wget; then
    pinged=''
    if wget -q -O /dev/null -U "$AGENT" "$MIRROR_URL/v2/" 2>/dev/null; then pinged=200; fi
else
    pinged=''
fi
if [ "$pinged" = 200 ]; then
    say "the accelerator answers: $MIRROR_URL"
    say "your console shows it as connected within seconds: $CONSOLE_URL"
else
    say "warning: $MIRROR_URL did not answer; check this machine's network, then pull an image"
    exit 2
fi
{% endautoescape %}