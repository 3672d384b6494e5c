"""Helium Console API: each device's last events, uplinks only, each uplink once across runs.

The API has no paging and no "since": ``GET /devices/:id/events`` returns a
device's last 100 events of every kind, and ``?sub_category=
uplink_integration_req`` its last 10 integration events (an integration
event's ``data.req.body`` is the uplink as the integration sent it, with the
DevEUI and every hotspot). So a pull takes both lists of every device and
keeps the uplinks it has not written before:

- An uplink is a device event of sub-category ``uplink_confirmed`` or
  ``uplink_unconfirmed`` (key: ``data.fcnt`` and ``reported_at``) or an
  integration event (key: the body's ``fcnt`` and ``reported_at``). A device
  event and an integration event of the same uplink (same ``fcnt``, times
  within :data:`PAIR_WINDOW_MS`) are one uplink, written once as the
  integration event, which says more; both keys are remembered.
- The state file keeps, per device, the keys of the uplinks written whose
  time is not older than the oldest event the API still returns (older
  ones cannot come back), and the newest event time seen.
- Pulling builds a complete history as long as fewer than 100 events of a
  device arrive between two pulls. When all of a device's 100 events are
  newer than anything seen before, some may have been missed: a warning
  says so.
"""

from __future__ import annotations

import argparse
import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from ..errors import InputError
from .errors import PullError
from .files import registry_from_files
from .http import ApiClient
from .pull import Page

__all__ = ["EVENTS_KEPT", "PAIR_WINDOW_MS", "HeliumSource"]

EVENTS_KEPT = 100  # the API returns a device's last 100 events
PAIR_WINDOW_MS = 60_000  # a device event and an integration event of one uplink are this close
UPLINK_EVENTS = ("uplink_confirmed", "uplink_unconfirmed")
INTEGRATION = "uplink_integration_req"


def _ms(value: Any) -> int | None:
    """Epoch milliseconds from a number or a digit string (Helium prints both)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _canonical(event: Any) -> bytes:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


class _Uplink:
    """One uplink found in the events: the event to write and the keys it is known by."""

    def __init__(self, event: dict, fcnt: Any, t: int | None) -> None:
        self.event = event
        self.fcnt = fcnt
        self.t = t
        self.keys: list[list] = [self._key(fcnt, t, event)]

    @staticmethod
    def _key(fcnt: Any, t: int | None, event: dict) -> list:
        if t is None:  # no time to tell repeats of one frame counter apart: the event itself
            return ["event", hashlib.sha1(_canonical(event)).hexdigest()]
        return [fcnt if isinstance(fcnt, int) else None, t]


class HeliumSource:
    """Pages of new Helium uplinks (one per device), for :func:`decoder.sources.pull.run`."""

    def __init__(self, client: ApiClient, args: argparse.Namespace, *, note: Callable[[str], None]) -> None:
        self.client = client
        self.args = args
        self.note = note
        self.devices: list[dict] = []
        self.state: dict[str, dict] = {}  # device id -> {"keys": [[fcnt, t], ...], "newest": t}
        self.skipped: Counter = Counter()
        self.uplinks_seen = 0
        self.warnings = 0
        self.missing = 0

    @staticmethod
    def check_args(args: argparse.Namespace) -> None:
        """Nothing beyond what argparse checks (--classes and --devices are required)."""

    # -- state --------------------------------------------------------------------------
    def restore(self, cursor: dict) -> None:
        """The uplinks written before, per device, from the state file."""
        devices = cursor.get("devices") if isinstance(cursor, dict) else None
        self.state = {str(k): v for k, v in (devices or {}).items() if isinstance(v, dict)}

    def cursor(self) -> dict:
        """Per device: the keys of the uplinks written that may still come back, and the newest event time."""
        return {"devices": {k: dict(v) for k, v in self.state.items()}}

    # -- classes -------------------------------------------------------------------------
    def registry(self) -> Any:
        """The classes and bindings of --classes/--devices; devices known by DevEUI also by their id."""
        registry = registry_from_files(self.args.classes, self.args.devices)
        doc = self.client.get("/devices")
        devices = doc.get("devices") if isinstance(doc, dict) else doc
        if not isinstance(devices, list) or not all(isinstance(d, dict) and d.get("id") for d in devices):
            raise PullError(f"GET {self.client.show('/devices')}: not a list of devices with ids")
        self.devices = devices
        default = registry.classes_for(None)
        for dev in devices:
            # Device events name the device by id only; a --devices map by DevEUI then still applies.
            eui = dev.get("dev_eui")
            own = registry.classes_for(eui) if isinstance(eui, str) and eui else default
            if own != default and registry.classes_for(dev["id"]) == default:
                for dc in own:
                    try:
                        registry.bind(dev["id"], dc)
                    except InputError as err:
                        self.note(f"device {dev['id']}: {err}")
        return registry

    # -- events ---------------------------------------------------------------------------
    def pages(self) -> Iterator[Page]:
        """One page per device: its uplinks not written before, oldest first."""
        for dev in self.devices:
            device_id = str(dev["id"])
            path = f"/devices/{device_id}/events"
            events = self.client.get(path, missing_ok=True)
            integration = self.client.get(path, {"sub_category": INTEGRATION}, missing_ok=True)
            if events is None or integration is None:
                self.missing += 1
                self.note(f"device {device_id} ({dev.get('name')}) is gone (HTTP 404); skipped")
                continue
            for doc in (events, integration):
                if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
                    raise PullError(f"GET {self.client.show(path)}: not a list of events")
            yield Page(self._new_uplinks(device_id, dev, events, integration), len(events) + len(integration))

    def _new_uplinks(self, device_id: str, dev: dict, events: list[dict], integration: list[dict]) -> list[dict]:
        previous = self.state.get(device_id)
        known = {tuple(k) for k in (previous or {}).get("keys", [])}
        unique: dict[bytes, dict] = {}
        for event in events + integration:
            unique.setdefault(_canonical(event), event)
        uplinks = self._uplinks(list(unique.values()))
        self.uplinks_seen += len(uplinks)
        new = [u for u in uplinks if not any(tuple(k) in known for k in u.keys)]
        times = [t for t in (_ms(e.get("reported_at")) for e in unique.values()) if t is not None]
        self._warn_if_missed(device_id, dev, events, previous)
        oldest = min(times) if times else None
        keys = [
            k
            for k in (previous or {}).get("keys", [])
            if oldest is None or k[0] == "event" or k[1] >= oldest - PAIR_WINDOW_MS
        ]
        keys.extend(k for u in new for k in u.keys)
        newest = max(times + [(previous or {}).get("newest") or 0]) if times or previous else None
        self.state[device_id] = {"keys": keys, "newest": newest}
        new.sort(key=lambda u: (u.t is None, u.t or 0))
        return [u.event for u in new]

    def _uplinks(self, events: list[dict]) -> list[_Uplink]:
        """The uplinks among the events; a device event and an integration event of one uplink are one."""
        plain: list[_Uplink] = []
        bodies: list[_Uplink] = []
        for e in events:
            sub = e.get("sub_category")
            data = e.get("data") if isinstance(e.get("data"), dict) else {}
            if e.get("category") == "uplink" and sub in UPLINK_EVENTS:
                plain.append(_Uplink(e, data.get("fcnt"), _ms(e.get("reported_at"))))
            elif sub == INTEGRATION:
                req = data.get("req") if isinstance(data.get("req"), dict) else {}
                body = req.get("body") if isinstance(req.get("body"), dict) else {}
                bodies.append(_Uplink(e, body.get("fcnt"), _ms(body.get("reported_at"))))
            else:
                self.skipped[f"{e.get('category')}/{sub}"] += 1
        out = []
        for b in bodies:
            twin = next(
                (
                    p
                    for p in plain
                    if p.fcnt == b.fcnt and p.t is not None and b.t is not None and abs(p.t - b.t) <= PAIR_WINDOW_MS
                ),
                None,
            )
            if twin is not None:
                plain.remove(twin)
                b.keys.extend(twin.keys)
            out.append(b)
        return plain + out

    def _warn_if_missed(self, device_id: str, dev: dict, events: list[dict], previous: dict | None) -> None:
        if len(events) < EVENTS_KEPT:
            return
        times = [t for t in (_ms(e.get("reported_at")) for e in events) if t is not None]
        newest_before = (previous or {}).get("newest")
        if previous is not None and times and newest_before is not None and min(times) <= newest_before:
            return
        self.warnings += 1
        name = f" ({dev.get('name')})" if dev.get("name") else ""
        if previous is None:
            self.note(
                f"device {device_id}{name}: the API returned its last {len(events)} events; older ones cannot be pulled"
            )
        else:
            self.note(
                f"device {device_id}{name}: all {len(events)} events are new since the last pull, so "
                "some may have been missed (the API keeps the last 100: pull more often)"
            )

    def summary_lines(self) -> list[str]:
        """Lines for the end-of-run summary: devices, uplinks, other events."""
        lines = [
            f"devices    {len(self.devices):>12,}   ({self.warnings} with all {EVENTS_KEPT} events new"
            + (f"; {self.missing} gone" if self.missing else "")
            + ")",
            f"uplinks    {self.uplinks_seen:>12,}   in the events (each uplink once)",
        ]
        for kind, count in self.skipped.most_common(6):
            lines.append(f"  {count:>21,}  other events: {kind}")
        return lines
