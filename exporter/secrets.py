"""The process-wide set of known secrets, scrubbed from every log line and error text."""

from __future__ import annotations

import logging
import threading


class SecretRegistry:
    """Passwords read from the config; `scrub` replaces any occurrence with ***."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def add(self, secret: str) -> None:
        if len(secret) >= 3:  # masking "a" would garble every message
            with self._lock:
                self._secrets = self._secrets | {secret}

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


SECRETS = SecretRegistry()


class ScrubbingFilter(logging.Filter):
    """Defense in depth: even a library's log line never carries a configured password."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = SECRETS.scrub(message)
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = SECRETS.scrub(str(record.exc_info[1]))
            scrubbed = f"{scrubbed}: {type(record.exc_info[1]).__name__}: {exc_text}"
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = scrubbed, None
        return True
