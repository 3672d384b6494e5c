"""Firefly http_pull queues as a stream source, against a fake queue on loopback that removes what it hands out.

Library tests run the source on a shared fake clock (waits are instant and
exactly measurable); the end-to-end tests run ``decoder stream
--firefly-queue`` as a real process, one of them killed with SIGKILL.
"""

from __future__ import annotations

import collections
import itertools
import json
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from fake_apis import FIREFLY_KEY, FakeClock, FakeFirefly, RateLimit, all_text, read_rows
from stream_process import TEST_CLASS, StreamProcess, generated_lines, summary_value

import decoder.cli
from decoder.errors import InputError
from decoder.stream._journal import Journal
from decoder.stream.firefly_queue import FireflyQueueSource

UID = "eeb95e33-d1ba-4a46-b22f-0c27a5955e53"
NOW = datetime(2026, 3, 1, 12, 0, 0)  # the fake wall clock's start (UTC)


def events(n: int, seed: int, received: datetime) -> list[dict]:
    """``n`` Firefly uplinks of the Test Device Class (unique uids), received around ``received``."""
    out = []
    for k, line in enumerate(generated_lines(n, seed=seed, mix="firefly=1.0")):
        packet = json.loads(line)
        packet["received_at"] = (received + timedelta(milliseconds=10 * k)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        out.append(packet)
    return out


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def api(clock):
    server = FakeFirefly(clock=clock)
    server.add_queue(UID)
    with server:
        yield server


def source(api, clock, tmp_path, notes=None, **kw) -> FireflyQueueSource:
    kw.setdefault("limit", 100)
    return FireflyQueueSource(
        UID,
        api_key=FIREFLY_KEY,
        journal=tmp_path / "journal",
        api_url=api.url,
        timing=clock.timing(wall=NOW),
        log=(notes.append if notes is not None else None),
        **kw,
    ).start()


def journal_bodies(directory: Path) -> list[bytes]:
    """Every whole message in the journal's segments, as written (the line without its CRC)."""
    out = []
    for path in sorted(directory.glob("*.journal")):
        out += [line[9:] for line in path.read_bytes().split(b"\n")[:-1]]  # [-1]: after the last newline
    return out


def poll_times(api) -> list[float]:
    return [r.at for r in api.requests_to(f"/http_pull/{UID}")]


# -- polling --------------------------------------------------------------------------------------


@pytest.mark.parametrize("items", ["objects", "texts", "lines"])
def test_each_event_comes_out_once_in_order_and_is_journaled_before_it_goes_on(api, clock, tmp_path, items):
    """A JSON array of objects, or of the JSON text a template renders, or (a server that ignores
    encoding=json) one event per line: the same events, in queue order, each once; a full page is
    followed by the next poll at once."""
    api.queue_items = items
    sent = events(250, seed=1, received=NOW)
    api.enqueue(UID, sent)
    src = source(api, clock, tmp_path, interval=1.0)
    got = []
    for message in itertools.islice(src, 250):
        # On disk before it is handed on: a crash after this point cannot lose it.
        assert message.body in journal_bodies(tmp_path / "journal")
        got.append(message)
    src.close()
    assert [orjson.loads(m.body) for m in got] == sent
    assert [m.position for m in got] == list(range(1, 251))
    assert not any(m.redelivered for m in got)
    polls = api.requests_to(f"/http_pull/{UID}")
    assert [(r.query["limit"], r.query["encoding"]) for r in polls] == [("100", "json")] * len(polls)
    assert [len(p) for p in api.handed_out[UID][:3]] == [100, 100, 50]
    times = poll_times(api)
    assert len(times) == 3 and times[2] == times[1] == times[0]  # after a full page: no wait


def test_an_empty_queue_is_polled_ever_less_often_until_events_come(api, clock, tmp_path):
    """Empty polls double the wait up to ten intervals; a poll with events goes back to the interval."""

    def arrive(seen):
        n = len(api.requests_to(f"/http_pull/{UID}"))
        if n in (7, 8):
            api.enqueue(UID, events(3 if n == 7 else 2, seed=n, received=NOW))

    api.before = arrive
    src = source(api, clock, tmp_path, interval=1.0)
    assert len(list(itertools.islice(src, 5))) == 5
    src.close()
    times = poll_times(api)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times[:8])]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 1.0]


def test_rate_limits_429_and_5xx_are_handled_as_pull_does(api, clock, tmp_path):
    """No request while the rate limit says none is left; 500, 429 and a dropped connection are retried
    with back-off and lose nothing. An answer cut short is retried too, but the events Firefly removed
    for it are gone (no client can get them back): that is said, and nothing else is missing."""
    api.rate = RateLimit(limit=4, window_ms=2000)
    sent = events(1000, seed=2, received=NOW)
    api.enqueue(UID, sent)
    api.faults = {2: "500", 4: "429", 6: "drop", 9: "truncate"}
    cut: list[dict] = []

    def note_cut(seen):
        if seen.n == 9:
            cut.extend(e for _, e in list(api.queues[UID])[:50])

    api.before = note_cut
    notes: list[str] = []
    src = source(api, clock, tmp_path, notes, limit=50)
    got = [orjson.loads(m.body) for m in itertools.islice(src, len(sent) - 50)]
    src.close()
    assert len(cut) == 50
    assert got == [e for e in sent if e not in cut]
    assert api.violations == []
    stats = src.client.stats
    assert stats.waits > 0 and stats.retries == 4 and stats.rate_limited == 1
    assert any("HTTP 500; retrying" in n for n in notes)
    assert any("did not arrive whole are gone" in n for n in notes)


def test_an_api_that_fails_for_good_ends_the_stream_with_the_reason(api, clock, tmp_path):
    api.enqueue(UID, events(30, seed=3, received=NOW))
    api.faults = {n: "500" for n in range(2, 100)}
    src = source(api, clock, tmp_path, limit=20, retries=3)
    got = list(src)  # ends: the first poll's 20 events, then the API fails for good
    src.close()
    assert [m.position for m in got] == list(range(1, 21))
    assert "HTTP 500; gave up after 4 attempts" in str(src.failure)
    assert FIREFLY_KEY not in str(src.failure)


def test_stop_and_close_return_promptly_and_a_poll_in_flight_is_journaled(tmp_path):
    """Real time: stop() ends a long back-off at once; close() waits only for the poll in flight, whose
    events are journaled (the next start replays them)."""
    with FakeFirefly() as api:
        api.add_queue(UID)
        src = FireflyQueueSource(UID, api_key=FIREFLY_KEY, journal=tmp_path / "j", api_url=api.url, interval=30.0)
        got: list = []
        reader = threading.Thread(target=lambda: got.extend(src), daemon=True)
        reader.start()
        deadline = time.monotonic() + 10
        while not api.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # in the 30-second wait after the empty poll
        started = time.monotonic()
        src.stop()
        reader.join(5)
        assert not reader.is_alive() and time.monotonic() - started < 2.0
        src.close()

        sent = events(5, seed=4, received=datetime.now(UTC).replace(tzinfo=None))
        api.enqueue(UID, sent)
        api.faults = {len(api.requests) + 1: ("slow", 1.0)}
        src = FireflyQueueSource(UID, api_key=FIREFLY_KEY, journal=tmp_path / "j", api_url=api.url)
        reader = threading.Thread(target=lambda: next(src, None), daemon=True)
        reader.start()
        while not api.faults.get(len(api.requests)) and time.monotonic() < deadline + 10:
            time.sleep(0.01)  # until the slow poll is on the wire
        src.close()  # the answer comes, its events are journaled, then it closes
        reader.join(5)
        assert [orjson.loads(b) for b in journal_bodies(tmp_path / "j")] == sent
        again = FireflyQueueSource(UID, api_key=FIREFLY_KEY, journal=tmp_path / "j", api_url=api.url).start()
        assert again.pending == 5
        again.close()


def test_falling_behind_is_warned_about_at_most_once_a_minute(api, clock, tmp_path):
    """Events 95 minutes old (of their 2 hours); full pages on every poll for 5 minutes."""
    api.before = lambda seen: clock.sleep(10.0)  # each poll takes 10 s: time passes while pages stay full
    api.enqueue(UID, events(4, seed=5, received=NOW - timedelta(minutes=95)))
    api.enqueue(UID, events(76, seed=6, received=NOW))
    notes: list[str] = []
    src = source(api, clock, tmp_path, notes, limit=2)
    list(itertools.islice(src, 80))
    src.close()
    behind = [n for n in notes if "min after Firefly received them" in n]
    full = [n for n in notes if "came back full" in n]
    # The old events come in the first 2 polls (20 s apart): one warning. 40 full polls take 400 s: the
    # full-page warning comes once 300 s are reached (poll 31), and again a minute later (poll 37).
    assert len(behind) == 1 and "events arrive 95 min after" in behind[0]
    assert len(full) == 2, notes
    assert all(n.startswith("warning: ") and "\n" not in n for n in behind + full)


# -- the journal -------------------------------------------------------------------------------


def test_the_journal_replays_what_was_not_covered_ignores_a_torn_tail_and_never_reuses_a_position(tmp_path):
    ident = {"queue": UID, "api": "http://x/api/v1"}
    j = Journal(tmp_path, identity=ident, segment_bytes=60).open()
    assert j.append([b'{"a":1}', b'{"a":2}']) == 1
    assert j.append([b'{"a":3}']) == 3  # a new segment: the first one passed 60 bytes
    assert j.cover(2)
    assert len(list(tmp_path.glob("*.journal"))) == 1  # the covered segment is gone
    j.close()
    segment = next(tmp_path.glob("*.journal"))
    with open(segment, "ab") as f:
        f.write(b'0000abcd {"a":4')  # a write cut short by a crash: never flushed, never handed on
    j = Journal(tmp_path, identity=ident).open()
    assert j.pending == 1 and list(j.replay()) == [(3, b'{"a":3}')]
    assert j.append([b'{"a":5}']) == 4
    assert j.cover(4)
    j.close()
    j = Journal(tmp_path, identity=ident).open()
    assert j.pending == 0 and not list(tmp_path.glob("*.journal"))
    assert j.append([b'{"a":6}']) == 5  # positions once covered are never given again
    with pytest.raises(InputError, match="another process is using the journal"):
        Journal(tmp_path, identity=ident).open()
    j.close()
    with pytest.raises(InputError, match="belongs to queue"):
        Journal(tmp_path, identity={"queue": "other", "api": "http://x/api/v1"}).open()


# -- the command line ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "key", "message"),
    [
        (["--firefly-queue", "not-a-uid"], FIREFLY_KEY, "--firefly-queue: 'not-a-uid' is not a queue uid"),
        (["--firefly-queue", UID], None, "no API key: set FIREFLY_API_KEY"),
        (["--firefly-queue", UID, "--api-url", "https://h/v1?auth=k"], FIREFLY_KEY, "must not have a query"),
        (["--firefly-queue", UID, "--poll-limit", "0"], FIREFLY_KEY, "--poll-limit and --poll-interval"),
        (["--firefly-queue", UID, "--mqtt", "mqtt://h/t"], FIREFLY_KEY, "not allowed with argument"),
        (["--journal", "j"], FIREFLY_KEY, "--journal and --api-key-file go with --firefly-queue"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(monkeypatch, capsys, args, key, message):
    if key is None:
        monkeypatch.delenv("FIREFLY_API_KEY", raising=False)
    else:
        monkeypatch.setenv("FIREFLY_API_KEY", key)
    try:
        status = decoder.cli.main(["stream", *args, "--classes", TEST_CLASS])
    except SystemExit as exit_:  # argparse's own checks
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and FIREFLY_KEY not in err


def _redelivered(stderr: str) -> int:
    line = next(text for text in stderr.splitlines() if text.startswith("messages "))
    return int(line.split("(")[1].split()[0].replace(",", ""))


def _consumer(api, *extra: str) -> StreamProcess:
    p = StreamProcess(
        "--firefly-queue",
        UID,
        "--api-url",
        api.url,
        "--classes",
        TEST_CLASS,
        "--poll-limit",
        "100",
        "--poll-interval",
        "0.05",
        "--max-delay",
        "0.3",
        *extra,
        stdin=False,
    )
    p.wait_for_stderr("polling Firefly queue", timeout=180)
    return p


def test_decoder_stream_decodes_a_queue_to_stdout_and_the_key_appears_nowhere(tmp_path, monkeypatch):
    """Events come out decoded, in order, once, through retries; a refused key ends the stream with exit 1
    after everything fetched is written; the key is in no output, message or journal."""
    monkeypatch.setenv("FIREFLY_API_KEY", FIREFLY_KEY)
    now = datetime.now(UTC).replace(tzinfo=None)
    with FakeFirefly() as api:
        api.add_queue(UID)
        first = events(300, seed=7, received=now)
        api.enqueue(UID, first)
        with _consumer(api, "--journal", str(tmp_path / "journal")) as p:
            rows = [row for _, row in p.rows(300, timeout=120)]
            api.faults = {len(api.requests) + 2: "500", len(api.requests) + 3: "drop"}
            later = events(150, seed=8, received=now)
            api.enqueue(UID, later)
            rows += [row for _, row in p.rows(150, timeout=120)]
            api.faults = {len(api.requests) + 1: "401-echo"}
            assert p.wait(timeout=60) == 1
            rows += p.rest()
    assert [r["packet_id"] for r in rows] == [e["uid"] for e in first + later]
    assert all(r["error"] is None and r["decoded"] is not None for r in rows)
    assert "error: GET http://127.0.0.1" in p.stderr and "HTTP 401: the API key was refused" in p.stderr
    assert summary_value(p.stderr, "fetched") == 450
    text = p.stderr + json.dumps(rows)
    files = all_text(tmp_path)
    for form in (FIREFLY_KEY, FIREFLY_KEY[:12], FIREFLY_KEY[-12:]):
        assert form not in text and form.encode() not in files


def test_a_consumer_killed_with_sigkill_loses_nothing_the_queue_handed_out(tmp_path, monkeypatch):
    """Consumer A fetches every event; one Parquet file is complete, the rest wait in the open file when
    A is killed. The queue no longer has them: B replays them from the journal, then polls on."""
    monkeypatch.setenv("FIREFLY_API_KEY", FIREFLY_KEY)
    out = tmp_path / "out"
    journal = out / f"_firefly-queue-{UID}"
    now = datetime.now(UTC).replace(tzinfo=None)
    first, second = events(650, seed=9, received=now), events(300, seed=10, received=now)
    with FakeFirefly() as api:
        api.add_queue(UID)
        api.enqueue(UID, first)
        # Batches of at most 100 and files of at least 300 rows: A completes exactly one file of the 650.
        a = _consumer(api, "-o", str(out), "--max-rows", "100", "--roll-rows", "300", "--roll-seconds", "3600")
        try:
            deadline = time.monotonic() + 120
            while not (len(journal_bodies(journal)) == 650 and list(out.glob("part-*.parquet"))):
                assert time.monotonic() < deadline and a.proc.poll() is None, a.stderr
                time.sleep(0.05)
            a.signal(signal.SIGKILL)
            a.wait(timeout=30)
        finally:
            a.kill()
        assert not api.queues[UID], "the queue handed out everything"
        done_by_a = len(read_rows(out))
        covered = json.loads((journal / "covered.json").read_text())["covered"]
        assert 300 <= done_by_a < 650 and covered <= done_by_a
        api.enqueue(UID, second)
        with _consumer(api, "-o", str(out), "--roll-seconds", "0.5") as b:
            assert f"replaying {650 - covered:,} events" in b.stderr
            want = {e["uid"] for e in first + second}
            deadline = time.monotonic() + 120
            while want - {r["packet_id"] for r in read_rows(out)}:
                assert time.monotonic() < deadline and b.proc.poll() is None, b.stderr
                time.sleep(0.1)
            b.signal()
            assert b.wait(timeout=60) == 0, b.stderr
    rows = read_rows(out)
    counts = collections.Counter(r["packet_id"] for r in rows)
    assert set(counts) == want
    # B replayed what the journal did not have covered (flagged redelivered) and fetched only the new ones;
    # twice only what A had in a complete file but not yet recorded as covered.
    assert _redelivered(b.stderr) == 650 - covered and summary_value(b.stderr, "fetched") == 300
    assert sum(counts.values()) - len(want) == done_by_a - covered
    assert all(r["error"] is None for r in rows)
    assert [f.name for f in out.glob(".*")] == [".decoder.lock"], "a temporary file was left behind"
