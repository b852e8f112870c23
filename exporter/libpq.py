"""Imported first by the command line: psycopg needs a libpq, and without one its import
fails with a traceback.

tierwatch installs psycopg without its bundled libraries, so it loads the system libpq
(and with it the system OpenSSL that Python's ssl module has loaded already). A machine
without one gets a one-line answer and exit code 2 instead.
"""

from __future__ import annotations

import sys

NO_LIBPQ = ("tierwatch: psycopg finds no libpq: install the system's (Debian and Ubuntu: "
            "libpq5, RHEL: libpq) or psycopg's bundled one (pip install 'tierwatch[binary]')")

try:
    import psycopg  # noqa: F401  (loads libpq at import)
except ImportError:
    print(NO_LIBPQ, file=sys.stderr)
    raise SystemExit(2) from None
