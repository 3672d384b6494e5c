"""`decoder pull helium` against a fake Helium Console API on loopback (tests/fake_apis.py).

The API returns each device's last 100 events and last 10 integration events,
with no paging: the pull must write every uplink it can see exactly once,
across runs, whether it saw it as a device event, an integration event or
both, and say when events may have been missed.
"""

from __future__ import annotations

import collections
import json
import logging

import pytest
from fake_apis import (
    CLASS_FILES,
    HELIUM_KEY,
    FakeClock,
    FakeHelium,
    HeliumTraffic,
    all_text,
    read_rows,
)
from helpers import ROOT

import decoder.cli
import decoder.sources.http as pull_http

PROG = "decoder pull helium"
CLASSES = [a for name in CLASS_FILES for a in ("--classes", str(ROOT / "samples" / "classes" / name))]


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(pull_http, "DEFAULT_TIMING", fake.timing())
    return fake


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("HELIUM_API_KEY", HELIUM_KEY)


@pytest.fixture
def traffic():
    return HeliumTraffic(seed=5, devices=6)


@pytest.fixture
def api(clock, traffic):
    server = FakeHelium(clock=clock)
    for device_id, eui, cls in traffic.device_ids():
        server.add_device(device_id, eui, cls)
    with server:
        yield server


def devices_file(tmp_path, traffic, by: str = "id"):
    path = tmp_path / f"devices-by-{by}.json"
    path.write_text(json.dumps({(d if by == "id" else eui): cls for d, eui, cls in traffic.device_ids()}))
    return str(path)


def pull(api, devices: str, *args: str) -> int:
    return decoder.cli.main(["pull", "helium", "--api-url", api.url, *CLASSES, "--devices", devices, *args])


def uplinks(events: list[dict]) -> set[tuple[str, int]]:
    """(device id, fcnt) of the uplinks among events."""
    out = set()
    for e in events:
        if e["sub_category"] in ("uplink_unconfirmed", "uplink_confirmed"):
            out.add((e["device_id"], e["data"]["fcnt"]))
        elif e["sub_category"] == "uplink_integration_req":
            out.add((e["device_id"], e["data"]["req"]["body"]["fcnt"]))
    return out


def keys(rows: list[dict]) -> collections.Counter:
    return collections.Counter((r["device_id"], r["fcnt"]) for r in rows)


def add_uplinks(api, traffic, count: int, **kind) -> list[dict]:
    added = []
    for _ in range(count):
        for device_id, _eui, _cls in traffic.device_ids():
            events = traffic.uplink(device_id, **kind)
            api.add_events(device_id, events)
            added.extend(events)
    return added


@pytest.mark.parametrize("by", ["id", "eui"])
def test_each_uplink_once_decoded_and_as_its_integration_event_when_there_is_one(api, traffic, tmp_path, capsys, by):
    events = []
    for k in range(12):
        events += add_uplinks(api, traffic, 1, integration=k % 3 != 0, downlink=k % 4 == 0)
    out, raw = tmp_path / "h.parquet", tmp_path / "raw.jsonl"
    assert pull(api, devices_file(tmp_path, traffic, by), "-o", str(out), "--raw", str(raw)) == 0
    rows = read_rows(out)
    assert keys(rows) == collections.Counter(uplinks(events))  # each uplink once, no downlink
    assert all(r["error"] is None and r["decoded"] is not None for r in rows), [r["error"] for r in rows]
    with_integration = {
        (e["device_id"], e["data"]["req"]["body"]["fcnt"])
        for e in events
        if e["sub_category"] == "uplink_integration_req"
    }
    for r in rows:  # the integration event says more: the DevEUI and every hotspot
        assert (r["dev_eui"] is not None) == ((r["device_id"], r["fcnt"]) in with_integration)
    written = read_rows(raw)
    assert len(written) == len(rows) and all(e in events for e in written)  # as the API returned them
    # The requests: the devices, then each device's events and integration events, with the key header.
    paths = [(r.path.removeprefix("/api/v1"), r.query.get("sub_category", "")) for r in api.requests]
    assert paths[0] == ("/devices", "")
    assert sorted(paths[1:]) == sorted(
        (f"/devices/{d}/events", sub) for d, _, _ in traffic.device_ids() for sub in ("", "uplink_integration_req")
    )
    assert all(r.headers.get("key") == HELIUM_KEY for r in api.requests)
    assert "downlink/downlink_ack" in capsys.readouterr().err


def test_reruns_write_only_uplinks_not_written_before(api, traffic, tmp_path, capsys):
    devices = devices_file(tmp_path, traffic)
    first = add_uplinks(api, traffic, 15)
    assert pull(api, devices, "-o", str(tmp_path / "1.jsonl")) == 0
    later = add_uplinks(api, traffic, 4, integration=False)
    assert pull(api, devices, "-o", str(tmp_path / "2.jsonl")) == 0
    assert keys(read_rows(tmp_path / "2.jsonl")) == collections.Counter(uplinks(later))
    capsys.readouterr()
    assert pull(api, devices, "-o", str(tmp_path / "3.jsonl")) == 0
    assert not (tmp_path / "3.jsonl").exists() and "nothing new" in capsys.readouterr().err
    rows = read_rows(tmp_path / "1.jsonl") + read_rows(tmp_path / "2.jsonl")
    assert keys(rows) == collections.Counter(uplinks(first + later))


def test_an_uplink_seen_only_in_the_integration_list_is_written_once(api, traffic, tmp_path):
    """Its device event has left the last 100 events (downlinks came after), but its integration event is
    still among the last 10 integration events: the second request is what finds it."""
    device_id = traffic.device_ids()[0][0]
    uplink = traffic.uplink(device_id)
    api.add_events(device_id, uplink)
    api.add_events(
        device_id,
        [
            dict(
                traffic.uplink(device_id, integration=False, downlink=True)[1],
                id=f"dn-{k}",
                reported_at=str(1_800_000_000_000 + k),
            )
            for k in range(120)
        ],
    )
    devices = devices_file(tmp_path, traffic)
    assert pull(api, devices, "-o", str(tmp_path / "1.jsonl")) == 0
    rows = read_rows(tmp_path / "1.jsonl")
    assert keys(rows) == collections.Counter(uplinks(uplink))
    assert rows[0]["dev_eui"] == traffic.device_ids()[0][1]
    assert pull(api, devices, "-o", str(tmp_path / "2.jsonl")) == 0
    assert not (tmp_path / "2.jsonl").exists()


def test_a_warning_when_all_100_events_of_a_device_are_new(api, traffic, tmp_path, capsys):
    busy, calm = traffic.device_ids()[0][0], traffic.device_ids()[1][0]
    for _ in range(60):
        api.add_events(busy, traffic.uplink(busy))  # 120 events: more than the API keeps
    for _ in range(10):
        api.add_events(calm, traffic.uplink(calm))
    devices = devices_file(tmp_path, traffic)
    assert pull(api, devices, "-o", str(tmp_path / "1.jsonl")) == 0
    err = capsys.readouterr().err
    assert f"device {busy}" in err and "older ones cannot be pulled" in err and f"device {calm}" not in err

    for _ in range(30):
        api.add_events(busy, traffic.uplink(busy))  # 60 new events: the last pull is among the 100
    assert pull(api, devices, "-o", str(tmp_path / "2.jsonl")) == 0
    assert "may have been missed" not in capsys.readouterr().err

    for _ in range(51):
        api.add_events(busy, traffic.uplink(busy))  # 102 new events: some were not seen
    assert pull(api, devices, "-o", str(tmp_path / "3.jsonl")) == 0
    err = capsys.readouterr().err
    assert f"device {busy}" in err and "all 100 events are new since the last pull" in err
    rows = [r for n in (1, 2, 3) for r in read_rows(tmp_path / f"{n}.jsonl")]
    assert max(keys(rows).values()) == 1


def test_a_device_gone_between_the_list_and_its_events_is_skipped(api, traffic, tmp_path, capsys):
    add_uplinks(api, traffic, 3)
    gone = traffic.device_ids()[2][0]
    del api.events[gone]
    assert pull(api, devices_file(tmp_path, traffic), "-o", str(tmp_path / "h.jsonl")) == 0
    assert f"device {gone}" in capsys.readouterr().err
    assert {d for d, _ in keys(read_rows(tmp_path / "h.jsonl"))} == {d for d, _, _ in traffic.device_ids()} - {gone}


def test_the_key_is_in_no_message_log_or_file_and_failures_are_retried(api, traffic, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    log = tmp_path / "debug.log"
    handler = logging.FileHandler(log)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    devices = devices_file(tmp_path, traffic)
    events = add_uplinks(api, traffic, 5)
    out = tmp_path / "out"
    try:
        api.faults = {1: "500", 3: "drop", 5: "truncate", 7: "garbage", 9: "429"}
        first = pull(api, devices, "-o", str(out / "1.jsonl"), "--raw", str(out / "1.raw.jsonl.gz"))
        api.faults = {len(api.requests) + 2: "401-echo"}
        echo = pull(api, devices, "-o", str(out / "2.jsonl"))
        api.faults = {}
        monkeypatch.setenv("HELIUM_API_KEY", "wrong")
        refused = pull(api, devices, "-o", str(out / "3.jsonl"))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    err = capsys.readouterr().err
    assert (first, echo, refused) == (0, 1, 1)
    assert keys(read_rows(out / "1.jsonl")) == collections.Counter(uplinks(events))
    assert "HTTP 401: the API key was refused: invalid key for /api/v1/devices/" in err
    assert any(r.headers.get("key") == HELIUM_KEY for r in api.requests)
    files = all_text(out)
    for form in (HELIUM_KEY, "hlm/K3y", "special&chars", "hlm%2FK3y"):
        assert form not in err
        assert form not in log.read_text()
        assert form.encode() not in files


def test_classes_and_devices_are_required(api, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        decoder.cli.main(["pull", "helium", "--api-url", api.url, "-o", str(tmp_path / "h.jsonl")])
    assert exit_.value.code == 2
    assert "--classes" in capsys.readouterr().err
    assert not api.requests
