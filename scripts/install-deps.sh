#!/usr/bin/env bash
# Installs the system packages the topology and the alert tests need, only those missing.
# As root it uses apt-get directly; as a normal user it uses sudo when it can, else it says
# what to install and stops.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
declare -A NEED=(
  [pgbouncer]=pgbouncer
  [redis-server]=redis-server
  [promtool]=prometheus
  [amtool]=prometheus-alertmanager
  [etcd]=etcd-server    # the Patroni test cluster's DCS (tests/patroni.py)
  [etcdctl]=etcd-client
  [chromium]=chromium   # the status page's browser test (tests/browser.py)
  [haproxy]=haproxy     # the read-routing tests behind a real HAProxy (tests/haproxy.py)
)
missing=()
for bin in "${!NEED[@]}"; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("${NEED[$bin]}")
done
[ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
[ -x "$PG_BIN/pg_basebackup" ] || missing+=(postgresql-client-15)
# tierwatch's psycopg runs over the system libpq (pyproject.toml: psycopg without [binary])
# (grep reads all of ldconfig's list: grep -q would end it by SIGPIPE, a failure under pipefail)
/sbin/ldconfig -p | grep 'libpq\.so\.5 ' >/dev/null || missing+=(libpq5)
# The Patroni venv (scripts/install-patroni.sh) is made with /usr/bin/python3's venv module.
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)

if [ ${#missing[@]} -eq 0 ]; then
  exec "$(dirname "$0")/install-patroni.sh"
fi
echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo)
else
  echo "install-deps: please install as root: apt-get install ${missing[*]}" >&2
  exit 1
fi
# RUNLEVEL=1 keeps the packages' init scripts from starting system-wide services:
# the harness starts its own instances on free ports.
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
"$(dirname "$0")/install-patroni.sh"
