"""The worker-local spool: events kept on disk while the audit store is unreachable.

One JSON object per line, appended under an exclusive ``fcntl.flock`` and made durable (flush +
``os.fsync``) before ``append`` returns, so several processes on a worker can share one file. The
store replays the lines in file order under the same lock, then truncates the file. The file is
truncated, never removed: a process waiting for the lock holds it open and must not end up writing
into an unlinked file.

A line torn by a crash mid-write cannot be read back (its ``append`` never returned, so no caller was
told it was kept); the next writer starts on a fresh line. Such lines, and records the store refuses,
are set aside in ``<spool>.rejected`` with a warning rather than dropped or left to block the replay.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class LockedSpool:
    """The spool file while this process holds its lock (``Spool.locked()``)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def records(self) -> list[dict[str, Any]]:
        """The spooled records, oldest first."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        records = []
        for number, line in enumerate(b"".join(chunks).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("audit spool %s: line %d is not a whole event (torn write?): set aside", self.path, number)
                self.set_aside(line)
                continue
            records.append(record)
        return records

    @property
    def rejected_path(self) -> Path:
        return self.path.with_name(self.path.name + ".rejected")

    def set_aside(self, line: bytes) -> None:
        """Keep a line that cannot be replayed in ``<spool>.rejected`` for a person to look at."""
        with open(self.rejected_path, "ab") as rejected:
            rejected.write(line.rstrip(b"\n") + b"\n")
            rejected.flush()
            os.fsync(rejected.fileno())

    def add(self, record: dict[str, Any]) -> None:
        data = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        size = os.fstat(self._fd).st_size
        if size:
            os.lseek(self._fd, size - 1, os.SEEK_SET)
            if os.read(self._fd, 1) != b"\n":  # a torn line before us: do not glue this event onto it
                data = b"\n" + data
        os.write(self._fd, data)  # O_APPEND: at the end whatever the offset
        os.fsync(self._fd)

    def clear(self) -> None:
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)


class Spool:
    """An append-only JSON-lines file shared by the processes of one worker."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def pending(self) -> bool:
        """Whether anything may wait in the spool (a cheap stat, no lock)."""
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    @contextmanager
    def locked(self) -> Iterator[LockedSpool]:
        """Hold the spool's lock for the block (blocks while another process holds it)."""
        created = not self.path.exists()
        if created:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            if created:  # the new directory entry must survive a crash too
                dir_fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield LockedSpool(self.path, fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def add(self, record: dict[str, Any]) -> None:
        with self.locked() as spool:
            spool.add(record)

    def records(self) -> list[dict[str, Any]]:
        with self.locked() as spool:
            return spool.records()
