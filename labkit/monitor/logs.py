"""Structured logs: one JSON object per line, carrying the request id, so a slow request found in the
logs can be matched with the metrics (and the other way round).

    log = json_logger("labkit.requests", stream)
    log.info("request", extra={"request_id": rid, "latency_ms": 812.0, "outcome": "ok"})

A field a log line lacks is left out, never invented. Taught in 12_monitoring_and_alerting.
"""
from __future__ import annotations

import json
import logging
from typing import IO

FIELDS = ("request_id", "latency_ms", "outcome", "status", "replica", "batch_size")


class JsonFormatter(logging.Formatter):
    """A LogRecord as one JSON line: time, level, logger, message, and the FIELDS passed in `extra`."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": round(record.created, 6), "level": record.levelname, "logger": record.name,
               "msg": record.getMessage()}
        doc.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def json_logger(name: str, stream: IO[str]) -> logging.Logger:
    """A logger that writes JSON lines to `stream` only (not propagated to the root logger)."""
    log = logging.getLogger(name)
    log.handlers = [logging.StreamHandler(stream)]
    log.handlers[0].setFormatter(JsonFormatter())
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def read_json_lines(text: str) -> list[dict]:
    """Parse a JSON-lines log; a line that is not JSON raises (a log you cannot parse is a bug)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def slowest(lines: list[dict], n: int = 3) -> list[dict]:
    """The n slowest requests in a parsed log."""
    timed = [d for d in lines if "latency_ms" in d]
    return sorted(timed, key=lambda d: d["latency_ms"], reverse=True)[:n]


