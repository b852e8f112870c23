#!/usr/bin/env bash
# Installs Patroni (the Patroni test cluster's manager, tests/patroni.py) into a cached venv
# outside the clone, once: later runs find the stamp and return at once.
#
# The venv is made with /usr/bin/python3 on purpose: the harness runs Patroni as the
# `postgres` user when root, and another python3 on PATH may live under /root (mode 0700),
# which that user cannot execute. Everything is left readable and executable for all.
set -euo pipefail

PATRONI_REQUIREMENT="${TIERWATCH_PATRONI_REQUIREMENT:-patroni[etcd3,psycopg3]==4.1.5}"
PATRONI_DIR="${TIERWATCH_PATRONI_DIR:-/var/tmp/tierwatch-patroni}"
VENV="$PATRONI_DIR/venv"
STAMP="$VENV/.tierwatch-installed"

if [ -x "$VENV/bin/patroni" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$PATRONI_REQUIREMENT" ]; then
  exit 0
fi
if ! /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null; then
  echo "install-patroni: /usr/bin/python3 has no venv module (apt-get install python3-venv)" >&2
  exit 1
fi
echo "install-patroni: installing $PATRONI_REQUIREMENT into $VENV"
umask 022
mkdir -p "$PATRONI_DIR"
chmod 755 "$PATRONI_DIR"
# A venv cannot be moved (its scripts name their interpreter by absolute path), so it is
# built in place; the stamp, written last, marks it complete.
rm -rf "$VENV"
/usr/bin/python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input "$PATRONI_REQUIREMENT"
chmod -R a+rX "$VENV"
echo "$PATRONI_REQUIREMENT" > "$STAMP"
