"""Process logging: JSON lines for journald and log shippers, readable text on a terminal."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

# Attributes every LogRecord has; anything else was passed with `extra=` and goes into the JSON.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Set up the root logger once: ``APPLIANCE_LOG_LEVEL`` and ``APPLIANCE_LOG_FORMAT`` (json|text|auto)."""
    level = (level or os.environ.get("APPLIANCE_LOG_LEVEL") or "INFO").upper()
    fmt = (fmt or os.environ.get("APPLIANCE_LOG_FORMAT") or "auto").lower()
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in logging.getLevelNamesMapping() else "INFO")
    # APScheduler logs every job start and end at INFO, NannyML every fit and estimate of every monitor run:
    # job runs are recorded in monitoring.db instead, and these lines would bury the appliance's own.
    for chatty in ("apscheduler", "nannyml"):
        logging.getLogger(chatty).setLevel(max(root.level, logging.WARNING))
