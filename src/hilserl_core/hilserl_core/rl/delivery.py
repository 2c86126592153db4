"""Delivery of transitions from actors to the learner: exactly once, durable before acknowledged.

Three parts, none of them ROS:

- ``DeliveryLedger`` (learner): which sequence numbers of each actor stream (actor id + the actor
  process's session) are stored. ``through`` is the contiguous watermark: every sequence number up
  to it is stored. A resent transition that is already stored is recognised and dropped.
- ``TransitionLog`` (learner): an append-only log of the received payloads (the wire bytes, a
  safetensors container; no pickle) in segment files under ``<checkpoint_dir>/transitions/``.
  Each record is framed with its length and a CRC32, so a record torn by a crash is found and cut
  off when the log is opened. The learner acknowledges a transition only once its record is
  fsynced; a checkpoint stores how many records its buffers hold (``applied``) and the ledger,
  and on restart the records after that are added again. Segments no checkpoint needs are pruned.
- ``TransitionSpool`` (actor): what was sent and not yet acknowledged, resent when the learner
  answers again; bounded, so the actor stops starting episodes when it is full instead of
  dropping data.
"""

from __future__ import annotations

import collections
import json
import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Set, Tuple, Union

from ..formats.tensorio import fsync_dir

__all__ = ["DeliveryLedger", "LearnerInbox", "TransitionLog", "TransitionLogError", "LogRecord", "TransitionSpool", "stream_key"]


def stream_key(actor_id: str, session: str) -> str:
    return f"{actor_id}#{session}" if session else actor_id


@dataclass
class _Stream:
    """One actor process's sequence numbers: all up to ``through`` stored, and ``above`` those."""

    actor: str
    session: str
    through: int = -1
    above: Set[int] = field(default_factory=set)

    def has(self, seq: int) -> bool:
        return seq <= self.through or seq in self.above


class DeliveryLedger:
    """Per actor stream: the contiguous watermark and the sequence numbers stored above it."""

    def __init__(self) -> None:
        self.streams: Dict[str, _Stream] = {}
        self.duplicates = 0

    def has(self, actor_id: str, session: str, seq: int) -> bool:
        s = self.streams.get(stream_key(actor_id, session))
        return s is not None and s.has(seq)

    def add(self, actor_id: str, session: str, seq: int) -> bool:
        """Record ``seq`` as stored; False (and counted as a duplicate) when it already was."""
        s = self.streams.setdefault(stream_key(actor_id, session), _Stream(actor_id, session))
        if s.has(seq):
            self.duplicates += 1
            return False
        s.above.add(seq)
        while s.through + 1 in s.above:
            s.through += 1
            s.above.discard(s.through)
        return True

    def missing(self) -> int:
        """Sequence numbers below the highest stored one that are not stored (resends fill them)."""
        return sum(max(s.above) - s.through - len(s.above) for s in self.streams.values() if s.above)

    def watermarks(self) -> List[Dict[str, Any]]:
        return [{"actor": s.actor, "session": s.session, "through": s.through} for s in self.streams.values()]

    def to_json(self) -> List[Dict[str, Any]]:
        return [{**w, "above": sorted(s.above)} for w, s in zip(self.watermarks(), self.streams.values())]

    @classmethod
    def from_json(cls, items: Any) -> "DeliveryLedger":
        ledger = cls()
        for item in items or []:
            s = _Stream(str(item["actor"]), str(item["session"]), int(item["through"]), {int(v) for v in item.get("above", [])})
            ledger.streams[stream_key(s.actor, s.session)] = s
        return ledger


class TransitionLogError(Exception):
    """The log cannot be read (a damaged record that is not a torn tail)."""


@dataclass
class LogRecord:
    index: int
    actor_id: str
    session: str
    seq: int
    payload: bytes


_MAGIC = b"HTL1"
_HEAD = struct.Struct("<4sIII")  # magic, header length, payload length, crc32 of header + payload
_SEGMENT = re.compile(r"segment_(\d{12})\.log")


class TransitionLog:
    """Append-only record of received transition payloads; see the module docstring."""

    def __init__(self, directory: "str | Path", segment_records: int = 1000) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_records = max(1, int(segment_records))
        self.repaired: Optional[str] = None  # what opening cut off (a torn tail), for the log
        self._file = None
        self._file_start = 0
        self._file_count = 0
        self._dirty = False
        self._lock = threading.Lock()  # appends (receiving thread) vs pruning (training thread)
        self.next_index = self._recover()

    def _segments(self) -> List[Tuple[int, Path]]:
        found = []
        for p in self.directory.iterdir():
            m = _SEGMENT.fullmatch(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    @property
    def first_index(self) -> int:
        segs = self._segments()
        return segs[0][0] if segs else self.next_index

    def _recover(self) -> int:
        """Index after the last whole record; a torn tail of the last segment is cut off."""
        segs = self._segments()
        if not segs:
            return 0
        start, path = segs[-1]
        count = 0
        with open(path, "r+b") as f:
            while True:  # one record at a time: a segment can hold hundreds of MB of images
                good_end = f.tell()
                rec = _read_record(f)
                if rec is None:
                    break
                if isinstance(rec, str):
                    size = f.seek(0, os.SEEK_END)
                    f.truncate(good_end)
                    os.fsync(f.fileno())
                    self.repaired = f"{path}: cut {size - good_end} byte(s) after record {start + count} ({rec})"
                    break
                count += 1
        return start + count

    def append(self, payload: bytes, actor_id: str, session: str, seq: int) -> int:
        """Write one record (not yet durable: see ``sync``); its index."""
        with self._lock:
            return self._append(payload, actor_id, session, seq)

    def _append(self, payload: bytes, actor_id: str, session: str, seq: int) -> int:
        if self._file is None or self._file_count >= self.segment_records:
            self._open_segment()
        header = json.dumps({"actor": actor_id, "session": session, "seq": int(seq)}).encode()
        crc = zlib.crc32(payload, zlib.crc32(header))
        self._file.write(_HEAD.pack(_MAGIC, len(header), len(payload), crc) + header)
        self._file.write(payload)
        self._file_count += 1
        self._dirty = True
        index = self.next_index
        self.next_index += 1
        return index

    def _open_segment(self) -> None:
        reopen = self._file is None  # the first append since opening: go on in the last segment
        if self._file is not None:
            self._sync()
            self._file.close()
        segs = self._segments()
        if reopen and segs and self.next_index - segs[-1][0] < self.segment_records:
            start, path = segs[-1]
        else:
            start, path = self.next_index, self.directory / f"segment_{self.next_index:012d}.log"
        self._file = open(path, "ab")
        self._file_start, self._file_count = start, self.next_index - start
        fsync_dir(self.directory)

    def sync(self) -> bool:
        """Make every appended record durable; whether there was anything to do."""
        with self._lock:
            return self._sync()

    def _sync(self) -> bool:
        if not self._dirty or self._file is None:
            return False
        self._file.flush()
        os.fsync(self._file.fileno())
        self._dirty = False
        return True

    def records(self, start: int = 0) -> Iterator[LogRecord]:
        """Records with index >= ``start``, oldest first."""
        self.sync()
        segs = self._segments()
        ends = [s for s, _ in segs[1:]] + [self.next_index]
        for (seg_start, path), seg_end in zip(segs, ends):
            if seg_end <= start:
                continue
            with open(path, "rb") as f:
                index = seg_start
                while True:
                    offset = f.tell()
                    rec = _read_record(f, keep_payload=index >= start)
                    if rec is None:
                        break
                    if isinstance(rec, str):
                        raise TransitionLogError(f"{path}: record {index} at byte {offset}: {rec}")
                    meta, payload = rec
                    if index >= start:
                        yield LogRecord(index, meta["actor"], meta["session"], int(meta["seq"]), payload)
                    index += 1

    def prune(self, below: int) -> int:
        """Delete whole segments whose records all have index < ``below``; how many."""
        with self._lock:
            return self._prune(below)

    def _prune(self, below: int) -> int:
        segs = self._segments()
        removed = 0
        for (start, path), nxt in zip(segs, segs[1:]):
            if nxt[0] <= below and (self._file is None or start != self._file_start):
                path.unlink()
                removed += 1
        if removed:
            fsync_dir(self.directory)
        return removed

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._sync()
                self._file.close()
                self._file = None


def _read_record(f: BinaryIO, keep_payload: bool = True) -> Union[None, str, Tuple[dict, bytes]]:
    """The record at the file's position (header dict, payload), None at a clean end, or why the
    bytes there are not a whole record. The checksum is checked either way; ``keep_payload``
    False returns an empty payload (skipping records still reads them once)."""
    head = f.read(_HEAD.size)
    if not head:
        return None
    if len(head) < _HEAD.size:
        return "truncated record header"
    magic, hlen, plen, crc = _HEAD.unpack(head)
    if magic != _MAGIC:
        return "bad record marker"
    if f.tell() + hlen + plen > os.fstat(f.fileno()).st_size:  # (a torn length must not size a read)
        return "truncated record"
    header = f.read(hlen)
    payload = f.read(plen)
    if zlib.crc32(payload, zlib.crc32(header)) != crc:
        return "checksum mismatch"
    try:
        meta = json.loads(header)
        meta["actor"], meta["session"], meta["seq"]
    except (ValueError, KeyError, TypeError) as exc:
        return f"bad record header ({exc})"
    return meta, payload if keep_payload else b""


class TransitionSpool:
    """The actor's sent-but-unacknowledged transitions (sequence -> message), oldest first."""

    def __init__(self, max_transitions: int, resend_after_s: float = 3.0) -> None:
        self.max_transitions = max(1, int(max_transitions))
        self.resend_after_s = resend_after_s
        self.pending: "collections.OrderedDict[int, List[Any]]" = collections.OrderedDict()  # seq -> [msg, last sent, first sent]
        self.acknowledged_through = -1
        self.resent = 0

    def __len__(self) -> int:
        return len(self.pending)

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.max_transitions

    def sent(self, seq: int, msg: Any, now_s: float) -> None:
        self.pending[seq] = [msg, now_s, now_s]

    def acknowledge(self, through: int) -> int:
        """Drop everything up to ``through``; how many were dropped."""
        dropped = 0
        while self.pending:
            seq = next(iter(self.pending))
            if seq > through:
                break
            del self.pending[seq]
            dropped += 1
        self.acknowledged_through = max(self.acknowledged_through, through)
        return dropped

    def oldest_age_s(self, now_s: float) -> float:
        """How long the oldest unacknowledged transition has waited since it was first sent (resends
        do not make it younger: a learner that answers but stores nothing shows as ever later)."""
        if not self.pending:
            return 0.0
        return now_s - next(iter(self.pending.values()))[2]

    def due(self, now_s: float, limit: int) -> List[Tuple[int, Any]]:
        """Up to ``limit`` messages, oldest first, unacknowledged ``resend_after_s`` after they were
        last sent; they count as sent again now."""
        out = []
        for seq, entry in self.pending.items():
            if len(out) >= limit:
                break
            if now_s - entry[1] >= self.resend_after_s:
                entry[1] = now_s
                out.append((seq, entry[0]))
        self.resent += len(out)
        return out


class LearnerInbox:
    """The learner's receiving end: refuse what is already stored, log the rest, acknowledge what is
    durable, and keep a second ledger of what the buffers hold (``applied``) for checkpoints.

    ``receive`` (receiving thread) logs a new payload and returns its log index; ``applied``
    (training thread, in log order) records that its transition went into the buffers (or was
    rejected there). A checkpoint stores ``checkpoint_state()``; after a restart ``restore`` takes
    it back and ``replay`` yields the logged transitions the checkpoint does not hold. Without a
    directory there is no log: acknowledgements then mean "received", not "durable".
    """

    def __init__(self, directory: "str | Path | None", segment_records: int = 1000) -> None:
        self.log = TransitionLog(directory, segment_records) if directory else None
        self.received = DeliveryLedger()  # logged (acknowledged once synced)
        self.stored = DeliveryLedger()  # in the buffers: what a checkpoint holds
        self.applied_index = 0  # log records [0, applied_index) are in the buffers
        self._next = self.log.next_index if self.log is not None else 0
        self.restored_from_log = 0

    def is_duplicate(self, actor_id: str, session: str, seq: int) -> bool:
        if self.received.has(actor_id, session, seq):
            self.received.duplicates += 1
            return True
        return False

    def receive(self, raw: bytes, actor_id: str, session: str, seq: int) -> int:
        """Log a payload that is not a duplicate; its index (the order the buffers take it in)."""
        if self.log is not None:
            index = self.log.append(raw, actor_id, session, seq)
        else:
            index = self._next
            self._next += 1
        self.received.add(actor_id, session, seq)
        return index

    def refused(self, actor_id: str, session: str, seq: int) -> None:
        """A transition that will never fit: acknowledged (so not resent), neither logged nor stored."""
        self.received.add(actor_id, session, seq)

    def applied(self, index: int, actor_id: str, session: str, seq: int) -> None:
        self.stored.add(actor_id, session, seq)
        self.applied_index = index + 1

    def sync(self) -> None:
        if self.log is not None:
            self.log.sync()

    def acknowledgement(self, learner_session: str) -> Dict[str, Any]:
        """What the actors may forget: call after ``sync``."""
        return {"learner": learner_session, "streams": self.received.watermarks()}

    def checkpoint_state(self) -> Dict[str, Any]:
        return {"applied": self.applied_index, "ledger": self.stored.to_json()}

    def restore(self, state: Optional[Dict[str, Any]]) -> None:
        """Take back a checkpoint's state (None: the buffers hold nothing from the log)."""
        state = state or {}
        self.applied_index = int(state.get("applied", 0))
        self.stored = DeliveryLedger.from_json(state.get("ledger"))
        self.received = DeliveryLedger.from_json(state.get("ledger"))

    def replay(self) -> Iterator[LogRecord]:
        """Logged records the buffers do not hold yet, oldest first; the caller applies each."""
        if self.log is None:
            return
        start = max(self.applied_index, self.log.first_index)
        for rec in self.log.records(start):
            if self.received.add(rec.actor_id, rec.session, rec.seq):
                self.restored_from_log += 1
                yield rec
            else:  # logged twice (cannot happen unless two learners shared a directory): skip
                self.applied(rec.index, rec.actor_id, rec.session, rec.seq)

    def prune(self, below: int) -> int:
        return self.log.prune(below) if self.log is not None else 0

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
