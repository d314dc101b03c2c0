#!/usr/bin/env bash
# Install syslog-ng's `loggen` (the load generator), the `syslog-ng` binary that
# bench.ingest uses as its reference receivers, syslog-ng's SQL destination
# (syslog-ng-mod-sql) and libdbi's SQLite 3 driver (libdbd-sqlite3) for the
# `syslog-ng-sql` receiver. Idempotent: installs only the packages that are missing; needs
# root (or sudo) and apt.
#
# Debian's syslog-ng-core would start a system-wide syslog-ng service on install. We forbid
# that with a /usr/sbin/policy-rc.d that exits 101 for the duration of the install (the
# previous policy, if any, is put back afterwards), then stop anything that started anyway:
# the benchmark only ever runs syslog-ng in the foreground with its own config, pidfile,
# persist file and control socket.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
POLICY=/usr/sbin/policy-rc.d
BACKUP=""

restore_policy() {
    if [ -n "$BACKUP" ]; then
        $SUDO mv -f "$BACKUP" "$POLICY"
    elif [ -e "$POLICY.cdrecon-bench" ]; then
        $SUDO rm -f "$POLICY" "$POLICY.cdrecon-bench"
    fi
}

forbid_service_starts() {
    if [ -e "$POLICY" ] && grep -qx 'exit 101' "$POLICY" && [ -x "$POLICY" ]; then
        return # already forbids every start: leave it as it is
    fi
    if [ -e "$POLICY" ]; then
        BACKUP="$(mktemp /tmp/policy-rc.d.XXXXXX)"
        $SUDO cp -p "$POLICY" "$BACKUP"
    else
        $SUDO touch "$POLICY.cdrecon-bench" # marks the policy as ours, to remove afterwards
    fi
    trap restore_policy EXIT
    printf '#!/bin/sh\n# cdrecon bench/setup-syslog-ng.sh: no service starts during install\nexit 101\n' \
        | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
}

stop_syslog_ng_service() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now syslog-ng.service >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/syslog-ng ]; then
        $SUDO /etc/init.d/syslog-ng stop >/dev/null 2>&1 || true
    fi
    local pidfile pid
    for pidfile in /run/syslog-ng.pid /var/run/syslog-ng.pid; do
        [ -s "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q syslog-ng; then
            echo "setup-syslog-ng: stopping the system syslog-ng (pid $pid)"
            $SUDO kill "$pid" || true
        fi
    done
}

PACKAGES=(syslog-ng-core syslog-ng-mod-sql libdbd-sqlite3)
MISSING=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        MISSING+=("$package")
    fi
done

if [ "${#MISSING[@]}" -eq 0 ]; then
    echo "setup-syslog-ng: ${PACKAGES[*]} already installed"
else
    forbid_service_starts
    export DEBIAN_FRONTEND=noninteractive
    for package in "${MISSING[@]}"; do
        if ! apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            $SUDO apt-get update
            break
        fi
    done
    $SUDO apt-get install -y --no-install-recommends "${MISSING[@]}"
fi
stop_syslog_ng_service

command -v loggen
syslog-ng --version | head -n 1
