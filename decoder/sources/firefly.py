"""Firefly API v1: device classes and bindings from the API, packets oldest first, each exactly once.

What the reference says, and what this module makes of it:

- ``GET /packets`` (all packets of the organization) and
  ``GET /devices/eui/{eui}/packets`` take ``direction=asc`` (oldest first),
  ``limit_to_last`` (at most 100), ``offset`` (packets to skip) and
  ``received_after`` (an ISO 8601 time: "only return packets after this
  date"), and answer ``{"packets": [...], "more": bool}``. ``received_at``
  is the time the packet was stored, printed in UTC without a zone and,
  in the reference's examples, to the second. "Track the uid field to
  ensure packet uniqueness."
- Not said: whether "after" includes the instant itself, how precisely the
  server compares, whether ``offset`` counts from the oldest packet when
  ``direction=asc`` (it is described as skipping "the most recent"), and
  what happens to offsets while packets arrive or old ones expire.

So the position in a stream is kept as a time plus uids, and the requests
are built so that none of those unknowns can lose or repeat a packet:

- A :class:`Stream` holds ``after`` (every packet received before it is in
  the outputs) and ``uids`` (the packets received at or after ``after``
  that are in the outputs). A packet is new if it was received at or after
  ``after`` and its uid is not in ``uids``.
- Requests ask for ``received_after`` = ``after`` cut to the second, minus
  one second: strictly earlier than ``after`` whether the server compares
  with > or >=, to the second or finer. What comes back from before
  ``after`` is dropped; what comes back twice is dropped by uid.
- After each page ``after`` moves up to the newest ``received_at`` seen,
  minus :data:`OVERLAP` (2 s) near the live edge: room for a packet stored
  a little after a later one became visible. Packets older than
  :data:`LIVE_EDGE` (by the local UTC clock) are settled, so there the
  overlap is 0 and a page repeats only the packets of the last second or
  two. The next request starts again at offset 0 from the new
  ``received_after``. So ``offset`` is not relied on across
  pages: packets arriving or expiring while a pull pages cannot shift a
  page boundary past a packet. Only when more than a page of packets fall
  within the overlap (a burst: the new ``received_after`` would be the
  same as the last) does the pull page on with ``offset`` under an
  unchanged ``received_after``; in ascending order new packets are added
  after those, so the offsets of the earlier pages stay valid.
- A page that is not oldest first, or the same page twice at a growing
  offset, stops the pull with an error instead of guessing.

The state file keeps ``after``, the newest ``received_at`` and ``uids``
per stream: ``all`` for ``GET /packets``, ``device:<EUI>`` per ``--device``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

import decoder

from ..errors import DecoderError, InputError, ScriptError
from .errors import PullError, UsageError
from .files import devices_args, registry_from_files
from .http import ApiClient
from .pull import Page

__all__ = ["OVERLAP", "PAGE_SIZE", "FireflySource", "Stream", "parse_time", "query_time"]

PAGE_SIZE = 100  # the reference's maximum of limit_to_last
OVERLAP = timedelta(seconds=2)
LIVE_EDGE = timedelta(hours=1)  # packets younger than this may still be joined by late-stored ones
EPOCH = datetime(1970, 1, 1)
_EUI = re.compile(r"^[0-9A-Fa-f]{16}$")


def parse_time(text: Any) -> datetime | None:
    """A ``received_at`` (ISO 8601; no zone means UTC) as a naive UTC datetime, or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t


def query_time(after: datetime) -> str | None:
    """The ``received_after`` that returns every packet received at or after ``after`` (None: all)."""
    if after <= EPOCH:
        return None
    t = max(after.replace(microsecond=0) - timedelta(seconds=1), EPOCH)
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def _uid(packet: dict) -> str:
    uid = packet.get("uid")
    if isinstance(uid, str) and uid:
        return uid
    # No uid (the reference says there always is one): the packet's own content stands in.
    return "sha1:" + hashlib.sha1(orjson.dumps(packet, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Stream:
    """One paged packet stream and how far the outputs hold it (see the module docstring)."""

    def __init__(self, key: str, path: str, after: datetime = EPOCH) -> None:
        self.key = key
        self.path = path
        self.after = after
        self.last: str | None = None  # newest received_at handled, as the API printed it
        self._last_t: datetime | None = None
        self.uids: dict[str, str] = {}  # uid -> received_at, for packets at or after `after`

    # -- state ------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The stream's position as stored in the state file."""
        return {"after": self.after.isoformat(), "last_received_at": self.last, "uids": dict(self.uids)}

    def restore(self, doc: dict[str, Any]) -> None:
        """Take the position from the state file (InputError if it is damaged)."""
        after = parse_time(doc.get("after"))
        if after is None or not isinstance(doc.get("uids", {}), dict):
            raise InputError(f"the state of stream {self.key} is damaged (no 'after' time or 'uids')")
        self.after = after
        self.last = doc.get("last_received_at")
        self._last_t = parse_time(self.last)
        self.uids = {str(k): str(v) for k, v in doc.get("uids", {}).items()}

    # -- paging -----------------------------------------------------------------------
    def accept(self, packet: dict) -> bool:
        """True if the packet is new (and from now on counted as pulled)."""
        received = packet.get("received_at")
        t = parse_time(received)
        if t is not None and t < self.after:
            return False
        uid = _uid(packet)
        if uid in self.uids:
            return False
        if t is None:  # unreadable time: keep it by uid, at the newest time known
            received, t = self.last or self.after.isoformat(), self._last_t or self.after
        self.uids[uid] = str(received)
        if self._last_t is None or t > self._last_t:
            self.last, self._last_t = str(received), t
        return True

    def advance(self, now: datetime) -> None:
        """Move ``after`` up to the newest packet seen (minus the overlap near ``now``); forget uids before it."""
        if self._last_t is None:
            return
        after = self._last_t - (OVERLAP if self._last_t > now - LIVE_EDGE else timedelta(0))
        if after > self.after:
            self.after = after
            self.uids = {u: r for u, r in self.uids.items() if (parse_time(r) or after) >= after}


class FireflySource:
    """Pages of new Firefly packets, for :func:`decoder.sources.pull.run`."""

    def __init__(self, client: ApiClient, args: argparse.Namespace, *, note: Callable[[str], None]) -> None:
        self.client = client
        self.args = args
        self.note = note
        self.since, devices = self.check_args(args)
        self.streams = [Stream(f"device:{e}", f"/devices/eui/{e}/packets") for e in dict.fromkeys(devices)] or [
            Stream("all", "/packets")
        ]
        self._other: dict[str, Any] = {}  # streams of the state this run does not page
        self.classes_loaded = 0
        self.class_problems = 0

    @staticmethod
    def check_args(args: argparse.Namespace) -> tuple[datetime, list[str]]:
        """``--since`` as a time and ``--device`` as upper-case EUIs (UsageError when malformed)."""
        since = EPOCH
        if args.since:
            parsed = parse_time(args.since)
            if parsed is None:
                raise UsageError(f"--since {args.since!r}: not an ISO 8601 time (e.g. 2024-01-01T00:00:00)")
            since = parsed
        devices = []
        for eui in args.device or []:
            if not _EUI.match(eui.strip()):
                raise UsageError(f"--device {eui!r}: not a 16-digit hexadecimal DevEUI")
            devices.append(eui.strip().upper())
        return since, devices

    # -- state --------------------------------------------------------------------------
    def restore(self, cursor: dict) -> None:
        """Continue each stream where the state file says (a new device stream from the organization's)."""
        saved = cursor.get("streams") if isinstance(cursor, dict) else None
        saved = saved if isinstance(saved, dict) else {}
        self._other = {k: v for k, v in saved.items() if k not in {s.key for s in self.streams}}
        for stream in self.streams:
            doc = saved.get(stream.key)
            if isinstance(doc, dict):
                stream.restore(doc)
                if self.args.since:
                    self.note(
                        f"--since is ignored for {stream.key}: the state file continues it after "
                        f"{stream.last or stream.after.isoformat()}"
                    )
            elif stream.key != "all" and isinstance(saved.get("all"), dict):
                stream.restore(saved["all"])  # the organization's stream covered this device up to there
            else:
                stream.after = self.since
                if stream.key == "all" and any(k.startswith("device:") for k in saved):
                    self.note(
                        "the organization's packets were not pulled before with this state file: packets "
                        "of the devices pulled with --device come again"
                    )

    def cursor(self) -> dict:
        """The positions covering every packet yielded so far (and the streams this run did not page)."""
        streams = dict(self._other)
        streams.update({s.key: s.to_json() for s in self.streams})
        return {"streams": streams}

    # -- classes --------------------------------------------------------------------------
    def registry(self) -> Any:
        """The classes and bindings of --classes/--devices, or of the API (GET /device_classes, .../euis)."""
        self._prime_rate_limit()
        args = self.args
        if args.classes:
            return registry_from_files(args.classes, args.devices)
        registry = decoder.Registry()
        doc = self.client.get("/device_classes")
        items = doc.get("device_classes") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise PullError(f"GET {self.client.show('/device_classes')}: no device_classes list in the response")
        for item in items:
            label = f"{item.get('id')} {item.get('name')!r}" if isinstance(item, dict) else repr(item)
            try:
                registry.add_class(decoder.compile(item))
                self.classes_loaded += 1
            except (ScriptError, InputError) as err:
                self.class_problems += 1
                self.note(f"device class {label} is not used, its packets get an error: {str(err).splitlines()[0]}")
        if args.devices:
            for cls, path in devices_args(args.devices):
                registry.load_devices(path, device_class=cls)
        else:
            for item in items:
                if isinstance(item, dict) and item.get("id") is not None:
                    self._bind_class(registry, item["id"])
        if not registry.bound_classes:
            raise InputError(
                "no device is bound to a device class that compiles, so nothing could be decoded "
                "(give --classes FILE and --devices FILE)"
            )
        return registry

    def _prime_rate_limit(self) -> None:
        """Learn what is left of the rate limit before the first counted request (GET /rate_limit is free)."""
        try:
            doc = self.client.get("/rate_limit", once=True)
        except PullError:
            return  # an older server without it: the first response's headers tell the same
        limit = doc.get("rate_limit") if isinstance(doc, dict) else None
        if isinstance(limit, dict) and isinstance(limit.get("remaining"), int) and isinstance(limit.get("reset"), int):
            self.client.prime(limit["remaining"], limit["reset"])

    def _bind_class(self, registry: Any, class_id: Any) -> None:
        path = f"/device_classes/{class_id}/euis"
        doc = self.client.get(path)
        devices = doc.get("devices") if isinstance(doc, dict) else None
        if not isinstance(devices, list):
            raise PullError(f"GET {self.client.show(path)}: no devices list in the response")
        for dev in devices:
            eui = dev.get("eui") if isinstance(dev, dict) else None
            if not eui:
                continue
            try:
                registry.bind(eui, class_id, address=dev.get("address"), strict=False)
            except DecoderError as err:
                self.note(f"device {eui}: {err}")

    # -- packets ----------------------------------------------------------------------------
    def pages(self) -> Iterator[Page]:
        """New packets, page by page, stream by stream."""
        for stream in self.streams:
            yield from self._pages(stream)

    def _pages(self, stream: Stream) -> Iterator[Page]:
        received_after = query_time(stream.after)
        offset = 0
        previous: list[str] | None = None
        while True:
            params = {
                "direction": "asc",
                "limit_to_last": PAGE_SIZE,
                "offset": offset or None,
                "received_after": received_after,
            }
            packets, more = self._page(stream.path, params)
            self._check_order(packets, stream.path, params)
            new = []
            for packet in packets:
                if stream.accept(packet):
                    new.append(packet)
            stream.advance(self.client.timing.wall())
            yield Page(new, len(packets))
            if not packets or not more:
                return
            uids = [_uid(p) for p in packets]
            following = query_time(stream.after)
            if following != received_after:
                received_after, offset = following, 0
            else:
                if not new and uids == previous:
                    raise PullError(
                        f"GET {self.client.show(stream.path, params)} returned the same packets as "
                        "the offset before; the API does not page this burst oldest first"
                    )
                offset += len(packets)
            previous = uids

    def _page(self, path: str, params: dict) -> tuple[list[dict], bool]:
        doc = self.client.get(path, params)
        packets = doc.get("packets") if isinstance(doc, dict) else None
        if not isinstance(packets, list) or not all(isinstance(p, dict) for p in packets):
            raise PullError(f"GET {self.client.show(path, params)}: the response has no list of packets")
        return packets, bool(doc.get("more"))

    def _check_order(self, packets: list[dict], path: str, params: dict) -> None:
        times = [t for t in (parse_time(p.get("received_at")) for p in packets) if t is not None]
        if any(b < a for a, b in itertools.pairwise(times)):
            raise PullError(
                f"GET {self.client.show(path, params)}: the packets are not oldest first "
                "(direction=asc); stopping rather than risk missing some"
            )

    def summary_lines(self) -> list[str]:
        """Lines for the end-of-run summary: classes loaded, each stream's mark."""
        lines = []
        if self.classes_loaded or self.class_problems:
            extra = f", {self.class_problems} not usable" if self.class_problems else ""
            lines.append(f"classes    {self.classes_loaded:>12,}   (from the API{extra})")
        for s in self.streams:
            lines.append(f"mark       {s.key}: packets up to {s.last or '(none yet)'}")
        return lines
