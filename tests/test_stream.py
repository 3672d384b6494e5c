"""decoder.StreamStage: live messages in, micro-batches of Arrow out.

What a pipeline built on the stage relies on: every message comes out once,
in order, with its source position (for at-least-once acks); batches close at
max_rows messages or max_delay seconds; a message is handed on within
max_delay of its arrival; errors name their message; stop() and a failing
source lose nothing already taken; memory stays bounded while the consumer is
slow; the async driver behaves like the sync one; idle batches keep a quiet
stream ticking; the schema never changes.

Every stream runs in a worker thread with a deadline (``consume`` /
``aconsume``), so a stage that hangs fails its test instead of the session.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest
from helpers import ROOT, SCHEDULING_SLACK, sample_generator

import decoder
from decoder import Message, StreamStage
from decoder.registry import Registry

CLASSES = sorted((ROOT / "samples" / "classes").glob("*.json"))
GPS_CLASS = ROOT / "samples" / "classes" / "test_device_class.json"
GROUPS = ["Test Device Class:9:2", "Room Climate Sensor:6:1", "Multi Sensor:1:1", "Other:7:1"]
MIX = "firefly=0.3,helium_event=0.15,helium_body=0.15,helium_integration=0.1,helium_downlink=0.1,tts=0.1,chirpstack=0.1"

GPS_EUI = "70B3D57ED0000001"  # bound to the Test Device Class in the gps engine
UNKNOWN_EUI = "FFFFFFFFFFFFFFFF"  # bound to nothing
GPS_HEX = "7F400000C000000064"  # 45 N, 90 W, 100 m (README)
# Messages that hold no uplink, put into the generated stream (the stream must keep counting them).
NOT_UPLINKS = {
    17: b'{"device_eui": "70B3D57ED0000001", "payload": "00"',
    400: b'"just a string"',
    401: b"",
    1234: b"[1, 2]",
    2999: b"{oops}",
}


# ----------------------------------------------------------------------------- harness


@dataclass
class Run:
    batches: list = field(default_factory=list)
    received: list = field(default_factory=list)  # time.monotonic() when each batch reached the consumer
    error: BaseException | None = None

    @property
    def positions(self) -> list:
        return [p for b in self.batches for p in b.positions]

    @property
    def real(self) -> list:
        """The batches that cover messages (not idle ones)."""
        return [b for b in self.batches if b.reason != "idle"]

    def table(self) -> pa.Table:
        return pa.concat_tables([b.table for b in self.batches])


def _finish(thread: threading.Thread, stage: StreamStage, timeout: float, what: str) -> None:
    thread.join(timeout)
    if thread.is_alive():
        stage.stop()
        thread.join(3)
        pytest.fail(f"{what} did not end within {timeout} s")


def consume(stage: StreamStage, source: Any, on_batch: Callable | None = None, timeout: float = 15.0) -> Run:
    """Drive ``stage.batches(source)`` to its end in a worker thread; the exception it raised is in ``.error``."""
    run = Run()

    def work() -> None:
        try:
            for batch in stage.batches(source):
                run.received.append(time.monotonic())
                run.batches.append(batch)
                if on_batch is not None:
                    on_batch(batch)
        except BaseException as e:  # noqa: BLE001 - the test looks at it
            run.error = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    _finish(t, stage, timeout, "stage.batches()")
    return run


def aconsume(stage: StreamStage, source: Any, on_batch: Callable | None = None, timeout: float = 15.0) -> Run:
    """The same for ``stage.abatches(source)`` on an event loop of its own; on_batch may be a coroutine function."""
    run = Run()

    async def main() -> None:
        async for batch in stage.abatches(source):
            run.received.append(time.monotonic())
            run.batches.append(batch)
            if on_batch is not None:
                result = on_batch(batch)
                if asyncio.iscoroutine(result):
                    await result

    def work() -> None:
        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001
            run.error = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    _finish(t, stage, timeout, "stage.abatches()")
    return run


def drive(kind: str, stage: StreamStage, source: Any, on_batch: Callable | None = None, timeout: float = 15.0) -> Run:
    return (consume if kind == "sync" else aconsume)(stage, source, on_batch, timeout)


def as_async(items):
    """An async generator over items, yielding control to the loop now and then like a socket would."""

    async def gen():
        for k, item in enumerate(items):
            if k % 64 == 0:
                await asyncio.sleep(0)
            yield item

    return gen()


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "decoder-stream-reader"]


def wait_for_readers(timeout: float = 3.0) -> None:
    """Let the stage's reader threads finish, so a count kept by the source is final."""
    end = time.monotonic() + timeout
    for t in reader_threads():
        t.join(max(end - time.monotonic(), 0.01))


def check_batches(run: Run, max_rows: int) -> None:
    """What holds for every batch of any stream."""
    messages = uplinks = decoded = 0
    for b in run.real:
        assert 0 < b.messages <= max_rows
        assert b.last_line - b.first_line + 1 == b.messages
        assert b.first_line == messages + 1  # lines are the message numbers of the stream
        failed = b.rows - b.table["error"].null_count
        assert b.rows == b.table.num_rows == b.records.num_rows
        assert b.rows == b.chunk.decoded + sum(b.chunk.errors.values())  # rows == decoded + failed
        assert b.chunk.decoded == b.rows - failed
        # the running stats move by exactly this batch
        messages, uplinks, decoded = messages + b.messages, uplinks + b.rows, decoded + (b.rows - failed)
        assert (b.stats.messages, b.stats.uplinks, b.stats.decoded) == (messages, uplinks, decoded)
        assert b.stats.uplinks == b.stats.decoded + b.stats.failed
        lines = b.table["line"].to_pylist()
        assert all(b.first_line <= line <= b.last_line for line in lines)
        assert lines == sorted(lines)
        for e in b.errors:
            assert e["position"] == b.positions[e["line"] - b.first_line]


# ----------------------------------------------------------------------------- packets


def firefly(uid: str, payload: str = GPS_HEX, eui: str = GPS_EUI, port: int = 2, fcnt: int = 1) -> dict:
    return {
        "uid": uid,
        "device_eui": eui,
        "payload": payload,
        "port": port,
        "fcnt": fcnt,
        "received_at": "2026-01-01T00:00:00Z",
        "mtype": "unconfirmed_data_up",
        "freq": 868.1,
        "spreading_factor": 7,
        "bandwidth": 125,
        "codr": "4/5",
        "gwrx": [{"gweui": "00000024B080E000", "rssi": -80, "lsnr": 7.5}],
    }


def helium_body(uid: str, payload: bytes = bytes.fromhex(GPS_HEX), eui: str = GPS_EUI, port: int = 2) -> dict:
    return {
        "id": uid,
        "dev_eui": eui,
        "payload": base64.b64encode(payload).decode(),
        "port": port,
        "fcnt": 7,
        "reported_at": 1767225600000,
        "hotspots": [{"id": "h", "name": "h", "rssi": -80.0, "snr": 7.5, "frequency": 868.1, "spreading": "SF7BW125"}],
    }


def line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


HELIUM_DOWNLINK = {
    "category": "downlink",
    "sub_category": "downlink_ack",
    "device_id": "d",
    "id": "x",
    "reported_at": "1767225600000",
    "data": {"fcnt": 1, "port": 2, "payload": "AA=="},
}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def generate():
    return sample_generator()


@pytest.fixture(scope="module")
def mixed(generate):
    """3000 generated messages of every shape and the three sample classes (plus devices of no
    class, Helium downlinks and a few messages that hold no uplink), their engine, and the
    engine's decode of all of them in one call."""
    g = generate.Generator([generate.parse_group(x) for x in GROUPS], 40, generate.parse_mix(MIX), 7)
    lines = [s.encode() for s in g.lines(3000)]
    for k, text in NOT_UPLINKS.items():
        lines[k] = text
    names = [grp.name for grp in g.groups]
    devices = {generate.device_eui(gi, i): names[gi] for gi, i in g.devices if names[gi] != "Other"}
    devices.update({generate.device_uuid(gi, i): names[gi] for gi, i in g.devices if names[gi] != "Other"})
    engine = decoder.Engine(Registry.from_files(CLASSES, devices=devices))
    reference = engine.decode(lines)
    assert reference.decoded > 1500 and reference.errors and reference.bad_lines and reference.skipped
    StreamStage(engine).warm_up()  # compile the kernels once, outside any timed test
    return SimpleNamespace(engine=engine, lines=lines, reference=reference, by_class=devices)


@pytest.fixture(scope="module")
def gps_engine():
    """The seed class, bound to GPS_EUI only: other devices have no class."""
    reg = Registry(decoder.load_classes(GPS_CLASS))
    reg.load_devices({GPS_EUI: 2})
    engine = decoder.Engine(reg)
    StreamStage(engine).warm_up()
    return engine


def bodies_of_every_type(lines: list[bytes]) -> list:
    """The same messages as bytes, str, bytes with their newline, and parsed dicts."""
    out = []
    for k, text in enumerate(lines):
        kind = k % 4
        if kind == 0:
            out.append(text)
        elif kind == 1:
            out.append(text.decode())
        elif kind == 2:
            out.append(text + b"\n")
        else:
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            out.append(value if isinstance(value, (dict, list)) else text)
    return out


@pytest.fixture(scope="module")
def sync_run(mixed):
    stage = StreamStage(mixed.engine, max_rows=500, max_delay=0.5)
    stage.warm_up()
    run = consume(stage, bodies_of_every_type(mixed.lines))
    assert run.error is None
    return run


# ----------------------------------------------------------------------------- 1. exactly once, in order


def test_every_message_comes_out_once_in_order_decoded_as_in_one_call(mixed, sync_run):
    n = len(mixed.lines)
    assert sync_run.positions == list(range(1, n + 1))  # default positions: the message numbers
    assert len(sync_run.batches) >= n // 500 and all(b.messages <= 500 for b in sync_run.batches)
    assert [b.index for b in sync_run.batches] == list(range(len(sync_run.batches)))
    check_batches(sync_run, 500)
    # the decoded stream equals the engine's decode of all the lines at once (line = message number)
    got, want = sync_run.table(), mixed.reference.table
    assert got.schema == want.schema
    assert got.num_rows == want.num_rows
    assert got.equals(want)
    # and what holds no uplink is named with its line
    bad = sorted((e["line"], e["error"]) for b in sync_run.batches for e in b.errors if "packet_id" not in e)
    assert bad == sorted(mixed.reference.bad_lines)
    assert {ln for ln, _ in bad} == {k + 1 for k, t in NOT_UPLINKS.items() if t.strip()}
    last = sync_run.batches[-1].stats
    ref = mixed.reference
    assert (last.messages, last.uplinks, last.decoded, last.failed) == (
        n,
        ref.rows,
        ref.decoded,
        ref.rows - ref.decoded,
    )
    assert last.errors == ref.errors and last.skipped == ref.skipped and last.bad_messages == len(ref.bad_lines)


def test_custom_positions_come_back_in_order_and_name_the_errors(mixed):
    stage = StreamStage(mixed.engine, max_rows=500, max_delay=0.5)
    msgs = [Message(text, ("uplinks/eu868", 1000 + k)) for k, text in enumerate(mixed.lines)]
    run = consume(stage, iter(msgs))
    assert run.error is None
    assert run.positions == [m.position for m in msgs]
    check_batches(run, 500)
    assert run.table().equals(mixed.reference.table)
    errors = [e for b in run.batches for e in b.errors]
    assert len(errors) == (mixed.reference.rows - mixed.reference.decoded) + len(mixed.reference.bad_lines)
    for e in errors:
        assert e["position"] == ("uplinks/eu868", 1000 + e["line"] - 1)
    # every row can be acked by the position of its message
    for b in run.batches:
        for row_line in b.table["line"].to_pylist():
            assert b.position_of(row_line) == ("uplinks/eu868", 1000 + row_line - 1)


# ----------------------------------------------------------------------------- 2. time and latency

SLOW_DELAY = 0.5  # 0.3 leaves too little to spare on a busy machine
SLOW_MESSAGES = 70  # 1.4 s of messages: three batches closed by time, then the end
SLOW_GAP = 0.02


def slow_source(lines: list[bytes], yielded: dict, count: int = SLOW_MESSAGES, gap: float = SLOW_GAP):
    """A source that gets a message every ``gap`` seconds; yielded[k] is when message k (1-based) left it."""
    for k in range(1, count + 1):
        time.sleep(gap)
        yielded[k] = time.monotonic()
        yield lines[k - 1]


@pytest.fixture(scope="module")
def slow_run(gps_engine):
    """Light messages (a Firefly uplink each, a few ms to decode a batch) and a consumer that does nothing."""
    stage = StreamStage(gps_engine, max_rows=1000, max_delay=SLOW_DELAY)
    stage.warm_up()
    yielded: dict[int, float] = {}
    lines = [line(firefly(f"u{k}", fcnt=k, eui=GPS_EUI if k % 5 else UNKNOWN_EUI)) for k in range(SLOW_MESSAGES)]
    run = consume(stage, slow_source(lines, yielded))
    assert run.error is None
    return run, yielded


def test_slow_source_batches_close_by_delay(slow_run):
    run, yielded = slow_run
    assert run.positions == list(range(1, SLOW_MESSAGES + 1))
    check_batches(run, 1000)
    # 1.4 s of messages with max_delay 0.5 s: closed by time, long before max_rows
    assert len(run.batches) >= 3
    assert all(b.reason == "delay" for b in run.batches[:-1]) and run.batches[-1].reason in ("delay", "end")
    assert all(b.messages < 1000 for b in run.batches)
    for b in run.batches:
        assert b.opened <= b.closed <= b.opened + SLOW_DELAY + SCHEDULING_SLACK
    # and well before twice max_delay even on a busy machine
    for b, received in zip(run.batches, run.received):
        assert max(received - yielded[p] for p in b.positions) < 2 * SLOW_DELAY


def test_latency_under_max_delay(slow_run):
    """The module's promise: a message is handed on within max_delay of its arrival (fast consumer)."""
    run, yielded = slow_run
    late = [
        (p, round(received - yielded[p], 4))
        for b, received in zip(run.batches, run.received)
        for p in b.positions
        if received - yielded[p] >= SLOW_DELAY + SCHEDULING_SLACK
    ]
    assert late == []
    assert run.batches[-1].stats.max_latency < SLOW_DELAY + SCHEDULING_SLACK


def test_latency_under_max_delay_behind_a_slow_sink(mixed):
    """Messages that arrive while the consumer writes the previous batch are still handed on
    within max_delay of their arrival (the reader thread took them; the stage knows when)."""
    delay = 0.4
    stage = StreamStage(mixed.engine, max_rows=1000, max_delay=delay)
    stage.warm_up()
    yielded: dict[int, float] = {}

    def sink(batch):
        if batch.index == 0:
            time.sleep(0.3)  # the first write opens a file, say: 3/4 of max_delay

    run = consume(stage, slow_source(mixed.lines, yielded, count=60), on_batch=sink)
    assert run.error is None and run.positions == list(range(1, 61))
    late = [
        (p, round(received - yielded[p], 3))
        for b, received in zip(run.batches, run.received)
        for p in b.positions
        if received - yielded[p] >= delay + SCHEDULING_SLACK
    ]
    assert late == []


def test_latency_under_max_delay_while_decoding_takes_time(gps_engine):
    """A Firefly "List Packets" page per message (500 uplinks, tens of ms to decode a batch) and a
    consumer that does nothing: every message still comes out within max_delay of its arrival."""
    delay = 0.3
    envelope = line({"packets": [firefly(f"p{j}", fcnt=j) for j in range(500)], "more": False})
    stage = StreamStage(gps_engine, max_rows=1000, max_delay=delay)
    stage.warm_up()
    yielded: dict[int, float] = {}
    run = consume(stage, slow_source([envelope] * 40, yielded, count=40))
    assert run.error is None and run.positions == list(range(1, 41))
    assert sum(b.rows for b in run.batches) == 40 * 500
    late = [
        (p, round(received - yielded[p], 3))
        for b, received in zip(run.batches, run.received)
        for p in b.positions
        if received - yielded[p] >= delay + SCHEDULING_SLACK
    ]
    assert late == []


# ----------------------------------------------------------------------------- 3. errors with positions


def test_errors_carry_line_and_position_and_stats_add_up(gps_engine):
    msgs = [
        Message(line(firefly("ok")), "m1"),  # 1: decoded
        Message(b'{"device_eui": "70B3D57ED0000001", "payload": "7F', "m2"),  # 2: malformed JSON
        Message(b'"just a string"', "m3"),  # 3: a JSON value, no packet
        Message(line(firefly("stranger", eui=UNKNOWN_EUI)), "m4"),  # 4: device without a class
        Message(line(firefly("short", payload="7F40")).decode(), "m5"),  # 5: payload too short (str body)
        Message(helium_body("helium-ok"), "m6"),  # 6: dict body, decoded
        Message([firefly("a0"), firefly("a1", payload="00"), 7], "m7"),  # 7: array: 2 rows + a bad item
        Message(
            {
                "packets": [
                    firefly("e0"),
                    firefly("e1", fcnt=2),  # 8: envelope, 3 rows
                    firefly("e2", eui=UNKNOWN_EUI),
                ],
                "more": False,
            },
            "m8",
        ),
        Message(line(HELIUM_DOWNLINK), "m9"),  # 9: skipped, no error
        Message(b"", "m10"),  # 10: blank, nothing
        Message({"hello": "world"}, "m11"),  # 11: unknown shape
        Message(line(firefly("last")) + b"\n", "m12"),  # 12: decoded
    ]
    stage = StreamStage(gps_engine, max_rows=5, max_delay=0.5)  # the messages span three batches
    run = consume(stage, msgs)
    assert run.error is None
    assert run.positions == [m.position for m in msgs]
    assert [b.messages for b in run.batches] == [5, 5, 2]
    check_batches(run, 5)

    errors = [e for b in run.batches for e in b.errors]
    assert [e["line"] for e in errors] == sorted(e["line"] for e in errors)
    got = sorted((e["line"], e["position"], e["error"].split(":")[0], e.get("packet_id")) for e in errors)
    assert got == sorted(
        [
            (2, "m2", "malformed JSON", None),
            (3, "m3", "expected a JSON object, got string", None),
            (4, "m4", "no device class", "stranger"),
            (5, "m5", "payload too short", "short"),
            (7, "m7", "payload too short", "a1"),
            (7, "m7", "item 2", None),
            (8, "m8", "no device class", "e2"),
            (11, "m11", "unknown shape", None),
        ]
    )
    short = next(e for e in errors if e.get("packet_id") == "short")
    assert short["error"] == "payload too short: needs 72 bits, has 16"
    assert (short["dev_eui"], short["port"], short["payload"].lower(), short["provider"]) == (
        GPS_EUI,
        2,
        "7f40",
        "firefly",
    )
    assert "expected a JSON object, got number" in next(e["error"] for e in errors if e["error"].startswith("item 2"))

    table = run.table()
    ids = [pid or did for pid, did in zip(table["packet_id"].to_pylist(), table["device_id"].to_pylist())]
    rows = list(zip(table["line"].to_pylist(), ids, table["error"].to_pylist()))  # Helium: the id is the device's
    assert [(ln, pid) for ln, pid, _ in rows] == [
        (1, "ok"),
        (4, "stranger"),
        (5, "short"),
        (6, "helium-ok"),
        (7, "a0"),
        (7, "a1"),
        (8, "e0"),
        (8, "e1"),
        (8, "e2"),
        (12, "last"),
    ]
    decoded = [pid for _, pid, err in rows if err is None]
    assert decoded == ["ok", "helium-ok", "a0", "e0", "e1", "last"]
    ok = table.to_pylist()[0]["decoded"]
    assert ok["gps"]["latitude"] == pytest.approx(45.0) and ok["gps"]["altitude"] == 100

    s = run.batches[-1].stats
    assert s.messages == 12
    assert s.uplinks == 10 and s.decoded == 6 and s.failed == 4
    assert s.errors == {
        "no device class": 2,
        "payload too short: needs 72 bits, has 16": 1,
        "payload too short: needs 72 bits, has 8": 1,
    }
    assert s.bad_messages == 4
    assert s.skipped == {"helium:downlink": 1}
    assert sum(s.bad_reasons.values()) == 4
    # every message is accounted for: rows, bad messages, skipped events, blank
    assert s.batches == 3


def test_bad_reasons_are_kinds_not_item_indexes(gps_engine):
    stage = StreamStage(gps_engine, max_rows=10, max_delay=0.5)
    msgs = [[firefly("a"), 1], [firefly("b"), firefly("c"), 2], [3], {"packets": [firefly("d"), 4]}]
    run = consume(stage, msgs)
    assert run.error is None
    s = run.batches[-1].stats
    assert s.bad_messages == 4
    # four bad items of one kind (a number where a packet should be): one reason, counted four times
    assert len(s.bad_reasons) == 1, dict(s.bad_reasons)
    assert sum(s.bad_reasons.values()) == 4


# ----------------------------------------------------------------------------- 4. a failing source


class BrokerGone(Exception):
    pass


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_failing_source_hands_on_what_came_before_then_raises(gps_engine, kind):
    def source():
        for k in range(250):
            yield line(firefly(f"u{k}", fcnt=k))
        raise BrokerGone("connection reset by peer")

    stage = StreamStage(gps_engine, max_rows=100, max_delay=0.5)
    if kind == "sync":
        run = consume(stage, source())
    else:

        async def asource():
            for k, item in enumerate(source()):
                if k % 50 == 0:
                    await asyncio.sleep(0)
                yield item

        run = aconsume(stage, asource())
    assert isinstance(run.error, BrokerGone) and "connection reset" in str(run.error)
    assert run.positions == list(range(1, 251))  # all 250 handed on, before the error
    assert [b.messages for b in run.batches] == [100, 100, 50]
    assert sum(b.rows for b in run.batches) == 250 and run.batches[-1].stats.decoded == 250


# ----------------------------------------------------------------------------- 5. stop()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_stop_from_another_thread_hands_on_the_open_batch(gps_engine, kind):
    """The source sends 30 messages, then blocks (a quiet socket): stop() from another thread ends
    the stream at once, with the open batch handed on and nothing lost."""
    release = threading.Event()
    produced = 0

    def source():
        nonlocal produced
        for k in range(30):
            time.sleep(0.003)
            produced += 1
            yield line(firefly(f"u{k}", fcnt=k))
        release.wait(10)  # blocks until the test is over

    async def asource():
        nonlocal produced
        for k in range(30):
            await asyncio.sleep(0.003)
            produced += 1
            yield line(firefly(f"u{k}", fcnt=k))
        while not release.is_set():
            await asyncio.sleep(0.02)

    stage = StreamStage(gps_engine, max_rows=1000, max_delay=5.0)  # neither limit closes the batch
    stopped = {}

    def stopper():
        give_up = time.monotonic() + 5
        while produced < 30 and time.monotonic() < give_up:
            time.sleep(0.01)
        time.sleep(0.15)  # let the stage take them
        stopped["at"], stopped["produced"] = time.monotonic(), produced
        stage.stop()

    threading.Thread(target=stopper, daemon=True).start()
    try:
        run = drive(kind, stage, source() if kind == "sync" else asource(), timeout=8)
    finally:
        release.set()
    assert run.error is None
    assert [b.reason for b in run.batches] == ["stop"]
    assert run.positions == list(range(1, stopped["produced"] + 1)) == list(range(1, 31))
    assert run.received[-1] - stopped["at"] < 1.0  # promptly, not at max_delay
    assert run.batches[0].stats.decoded == 30


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_stop_in_the_consumer_loop_loses_nothing_taken(gps_engine, kind):
    produced = 0
    msg = line(firefly("u"))

    def source():
        nonlocal produced
        while True:
            produced += 1
            yield msg

    async def asource():
        nonlocal produced
        while True:
            produced += 1
            yield msg
            if produced % 32 == 0:
                await asyncio.sleep(0)

    stage = StreamStage(gps_engine, max_rows=100, max_delay=0.5)
    stage.warm_up()

    def on_batch(batch):
        if batch.index == 0:
            time.sleep(0.2)  # the sink writes; meanwhile the reader fills the queue
            stage.stop()

    async def aon_batch(batch):
        if batch.index == 0:
            await asyncio.sleep(0.2)
            stage.stop()

    if kind == "sync":
        run = consume(stage, source(), on_batch)
        wait_for_readers()
    else:
        run = aconsume(stage, asource(), aon_batch)
    assert run.error is None
    assert run.batches[0].reason == "rows" and run.batches[0].messages == 100
    # whatever the stage took out of the source is handed on (acked or redelivered by the source)
    assert run.positions == list(range(1, produced + 1)), (len(run.positions), produced)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_stop_in_the_consumer_loop_ends_the_stream(gps_engine, kind):
    """stop() while holding a batch: the stream ends soon after, on an endless source,
    and what was handed on is the stream's first messages, each once."""
    msg = line(firefly("u"))
    stage = StreamStage(gps_engine, max_rows=100, max_delay=0.5)

    def on_batch(batch):
        if batch.index == 1:
            stage.stop()

    source = itertools.repeat(msg) if kind == "sync" else as_async(itertools.repeat(msg))
    run = drive(kind, stage, source, on_batch, timeout=8)
    assert run.error is None
    assert len(run.batches) <= 4  # at most: the batch in hand, what the stage holds, and no more
    assert run.positions == list(range(1, len(run.positions) + 1))
    assert run.batches[1].index == 1 and len(run.positions) >= 200


def test_leaving_the_loop_early_stops_the_reader(gps_engine):
    """A consumer that breaks out of the loop (no stop()): the reader thread ends and the source
    is not read on in the background."""
    pulled = 0

    def source():
        nonlocal pulled
        while True:
            pulled += 1
            yield line(firefly("u"))

    before = set(reader_threads())
    stage = StreamStage(gps_engine, max_rows=50, max_delay=0.5)
    batches = stage.batches(source())
    first = next(batches)
    assert first.messages == 50
    batches.close()  # what `break` does once the generator is collected
    end = time.monotonic() + 2
    while set(reader_threads()) - before and time.monotonic() < end:
        time.sleep(0.02)
    assert not set(reader_threads()) - before
    seen = pulled
    time.sleep(0.15)
    assert pulled == seen <= 50 + 50 + 2


# ----------------------------------------------------------------------------- 6. bounded memory


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_reader_runs_at_most_a_batch_or_two_ahead_of_a_slow_consumer(gps_engine, kind):
    max_rows = 200
    pulled = 0
    msg = line(firefly("u"))

    def source():
        nonlocal pulled
        while True:
            pulled += 1
            yield msg

    stage = StreamStage(gps_engine, max_rows=max_rows, max_delay=0.5)
    stage.warm_up()
    handed = 0
    ahead = []

    def slow(batch):
        nonlocal handed
        handed += batch.messages
        time.sleep(0.04)  # a slow sink: the reader gets all the time it wants
        ahead.append(pulled - handed)
        if batch.index == 7:
            stage.stop()

    run = drive(kind, stage, source() if kind == "sync" else as_async(source()), slow, timeout=10)
    assert run.error is None
    assert len(ahead) >= 8
    assert max(ahead) <= 2 * max_rows + 2, ahead
    assert max(ahead) >= max_rows // 2  # it does read ahead while the consumer works


# ----------------------------------------------------------------------------- 7. async driver


@pytest.mark.parametrize("source_kind", ["async generator", "list"])
def test_async_driver_same_stream_as_sync(mixed, sync_run, source_kind):
    bodies = bodies_of_every_type(mixed.lines)
    stage = StreamStage(mixed.engine, max_rows=500, max_delay=0.5)
    run = aconsume(stage, as_async(bodies) if source_kind == "async generator" else bodies)
    assert run.error is None
    assert run.positions == list(range(1, len(mixed.lines) + 1))
    check_batches(run, 500)
    assert run.table().equals(sync_run.table())
    assert [e for b in run.batches for e in b.errors] == [e for b in sync_run.batches for e in b.errors]
    s, t = run.batches[-1].stats, sync_run.batches[-1].stats
    assert (s.messages, s.uplinks, s.decoded, s.errors, s.bad_messages, s.skipped) == (
        t.messages,
        t.uplinks,
        t.decoded,
        t.errors,
        t.bad_messages,
        t.skipped,
    )


def test_async_driver_custom_positions(gps_engine):
    msgs = [Message(line(firefly(f"u{k}", fcnt=k)), ("partition-3", 7000 + k)) for k in range(250)]
    stage = StreamStage(gps_engine, max_rows=100, max_delay=0.5)
    run = aconsume(stage, as_async(msgs))
    assert run.error is None
    assert run.positions == [m.position for m in msgs]
    assert [b.messages for b in run.batches] == [100, 100, 50]
    assert run.table()["packet_id"].to_pylist() == [f"u{k}" for k in range(250)]


def test_sync_driver_refuses_an_async_iterable(gps_engine):
    stage = StreamStage(gps_engine)
    with pytest.raises(TypeError, match="abatches"):
        next(iter(stage.batches(as_async([b"{}"]))))


def test_limits_are_checked(gps_engine):
    for kwargs in ({"max_rows": 0}, {"max_delay": 0}, {"max_delay": -1.0}, {"idle": 0}):
        with pytest.raises(ValueError):
            StreamStage(gps_engine, **kwargs)


# ----------------------------------------------------------------------------- 8. idle


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_idle_batches_keep_a_quiet_stream_ticking(gps_engine, kind):
    idle = 0.25
    msg = line(firefly("late"))

    def source():
        time.sleep(1.1)  # a quiet socket
        yield msg

    async def asource():
        await asyncio.sleep(1.1)
        yield msg

    stage = StreamStage(gps_engine, max_rows=100, max_delay=0.3, idle=idle)
    stage.warm_up()
    started = time.monotonic()
    run = drive(kind, stage, source() if kind == "sync" else asource())
    assert run.error is None
    idles = [(b, t) for b, t in zip(run.batches, run.received) if b.reason == "idle"]
    assert 3 <= len(idles) <= 5
    assert [b.reason for b in run.batches[len(idles) :]] == ["end"]  # then the one message
    times = [started] + [t for _, t in idles]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(idle * 0.8 <= g <= idle + 0.25 for g in gaps), gaps
    for b, _ in idles:
        assert b.messages == 0 and b.rows == 0 and b.positions == [] and b.errors == []
        assert b.table.num_rows == 0 and b.table.schema == gps_engine.schema
        assert b.records.num_rows == 0 and b.records.schema == gps_engine.schema
        assert b.stats.messages == 0
    assert run.positions == [1]
    assert run.batches[-1].table["packet_id"].to_pylist() == ["late"]
    assert run.batches[-1].stats.messages == 1


def test_no_idle_batches_unless_asked(gps_engine):
    def source():
        time.sleep(0.8)
        yield line(firefly("late"))

    run = consume(StreamStage(gps_engine, max_rows=100, max_delay=0.3), source())
    assert run.error is None
    assert [b.reason for b in run.batches] == ["end"]


# ----------------------------------------------------------------------------- 9. redelivery, positions


def test_redelivered_messages_are_counted_and_unset_positions_are_message_numbers(gps_engine):
    msgs = [
        Message(line(firefly("a")), "mid-1"),
        Message(line(firefly("b")), None),  # no position: its message number
        Message(line(firefly("c")), "mid-3", redelivered=True),
        line(firefly("d")),  # a bare body: its message number
        Message(line(firefly("e")), None, redelivered=True),
        Message(line(firefly("f")), 0),  # a falsy position is still a position
        Message(line(firefly("g")), "mid-7", redelivered=True),
    ]
    stage = StreamStage(gps_engine, max_rows=3, max_delay=0.5)
    run = consume(stage, msgs)
    assert run.error is None
    assert run.positions == ["mid-1", 2, "mid-3", 4, 5, 0, "mid-7"]
    assert [b.stats.redelivered for b in run.batches] == [1, 2, 3]
    assert run.batches[-1].stats.messages == 7 and run.batches[-1].stats.decoded == 7
    assert run.table()["packet_id"].to_pylist() == list("abcdefg")


# ----------------------------------------------------------------------------- 10. schema


def test_schema_is_the_engines_in_every_batch_of_a_mixed_registry(mixed):
    """Batches holding one class, another, none at all (only errors), and idle ones: one schema."""
    engine = mixed.engine
    assert engine.mixed and len(engine.classes) == 3
    schema = engine.schema
    by_class: dict[str, list[bytes]] = {}
    for text in mixed.lines:
        if not text.startswith(b'{"ack"'):  # Firefly packets name their device by EUI
            continue
        eui = json.loads(text)["device_eui"]
        by_class.setdefault(mixed.by_class.get(eui, "none"), []).append(text)
    assert set(by_class) == {"Test Device Class", "Room Climate Sensor", "Multi Sensor", "none"}
    groups = [
        by_class["Room Climate Sensor"][:4],
        by_class["Multi Sensor"][:4],
        [b"{bad"] * 4,
        by_class["none"][:4],
        by_class["Test Device Class"][:4],
        [b'"x"', b"", b"[]", b"7"],
    ]
    stream = [m for g in groups for m in g]

    def source():
        yield from stream[:8]
        time.sleep(0.45)  # one idle batch in between
        yield from stream[8:]

    stage = StreamStage(engine, max_rows=4, max_delay=5.0, idle=0.3)
    run = consume(stage, source())
    assert run.error is None
    assert [b.messages for b in run.real] == [4] * 6
    assert any(b.reason == "idle" for b in run.batches)
    for b in run.batches:
        assert b.table.schema == schema
        assert b.records.schema == schema
    classes = [set(b.table["device_class"].to_pylist()) for b in run.real]
    assert classes == [{"Room Climate Sensor"}, {"Multi Sensor"}, set(), {None}, {"Test Device Class"}, set()]
    assert run.table().equals(engine.decode_packets(stream))
