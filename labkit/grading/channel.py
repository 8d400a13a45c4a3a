"""The results channel between the grading process and the grader: rows signed with a per-run key.

The grader makes a fresh random key per run and hands it to the runner on stdin, which the runner reads and
closes before it imports the submission. The runner writes one line per row on a pipe of its own (never
stdout): the row's JSON (with a sequence number) and its HMAC-SHA256. The grader accepts a run only if every
byte on the pipe is a well-signed row in sequence; anything else is tampering.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field

KEY_BYTES = 32


def new_key() -> bytes:
    """A fresh random key as hex bytes (what travels on the runner's stdin)."""
    return secrets.token_hex(KEY_BYTES).encode()


def sign_row(key: bytes, seq: int, row: dict) -> bytes:
    """One channel line: the row with its sequence number, a tab, its HMAC; newline-terminated."""
    body = json.dumps({**row, "seq": seq}, sort_keys=True).encode()
    return body + b"\t" + hmac.new(key, body, hashlib.sha256).hexdigest().encode() + b"\n"


@dataclass
class ChannelLog:
    """What the grader read on the channel: verified rows, whether the run said 'done', what was wrong."""
    rows: list[dict] = field(default_factory=list)
    done: bool = False
    problems: list[str] = field(default_factory=list)


def read_channel(key: bytes, data: bytes) -> ChannelLog:
    """Verify every line of `data`; rows after the first bad line are not trusted."""
    log = ChannelLog()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:
        log.problems.append("an unfinished line on the results channel")
        lines.pop()
    for seq, line in enumerate(lines):
        row = _verify(key, seq, line)
        if row is None:
            log.problems.append(f"a forged or corrupted row on the results channel (line {seq + 1})")
            break
        if log.done:
            log.problems.append("rows after the final 'done' row on the results channel")
            break
        log.done = row.get("kind") == "done"
        log.rows.append(row)
    return log


def _verify(key: bytes, seq: int, line: bytes) -> dict | None:
    body, sep, mac = line.partition(b"\t")
    if not sep or not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).hexdigest().encode()):
        return None
    try:
        row = json.loads(body)
    except ValueError:
        return None
    return row if isinstance(row, dict) and row.get("seq") == seq else None
