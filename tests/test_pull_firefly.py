"""`decoder pull firefly` against a fake Firefly API on loopback (tests/fake_apis.py).

Every test checks what a user would notice: each packet the API holds comes
out exactly once and decoded (or with its reason), across reruns,
interruptions and failures; no request goes out while the rate limit is
exhausted; the key is nowhere.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta

import pyarrow.csv as pcsv
import pytest
from fake_apis import (
    CLASS_FILES,
    FIREFLY_KEY,
    REFERENCE_PACKETS,
    FakeClock,
    FakeFirefly,
    RateLimit,
    all_text,
    firefly_generator,
    firefly_packets,
    read_rows,
)
from helpers import ROOT

import decoder.cli
import decoder.sources.http as pull_http

PROG = "decoder pull firefly"
T0 = datetime(2024, 3, 1, 8, 0, 0)
SAMPLE_CLASSES = [str(ROOT / "samples" / "classes" / name) for name in CLASS_FILES]


@pytest.fixture
def clock(monkeypatch):
    """A fake clock shared by the client and the fixture: waits take no real time and are exact."""
    fake = FakeClock()
    monkeypatch.setattr(pull_http, "DEFAULT_TIMING", fake.timing())
    return fake


@pytest.fixture
def gen():
    return firefly_generator(seed=7)


@pytest.fixture
def api(clock, gen):
    server = FakeFirefly(clock=clock)
    server.serve_sample_classes(gen)
    with server:
        yield server


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("FIREFLY_API_KEY", FIREFLY_KEY)


def pull(api, *args: str) -> int:
    return decoder.cli.main(["pull", "firefly", "--api-url", api.url, *args])


def uids(packets) -> list[str]:
    return [p["uid"] for p in packets]


def assert_exactly_once(rows: list[dict], packets: list[dict]) -> None:
    """Each packet of the API in the rows once, no other row; generated packets decoded."""
    got = collections.Counter(r["packet_id"] for r in rows)
    repeated = {k: n for k, n in got.items() if n > 1}
    assert not repeated, f"{len(repeated)} packets written more than once"
    missing = set(uids(packets)) - set(got)
    assert not missing, f"{len(missing)} of {len(packets)} packets missing"
    assert set(got) == set(uids(packets))
    reference = set(uids(REFERENCE_PACKETS))
    for r in rows:
        if r["packet_id"] in reference:
            assert r["error"] == "device class 99 is not loaded", r  # bound to the class that does not compile
        else:
            assert r["error"] is None and r["decoded"] is not None, r


def packet_requests(api) -> list:
    return [r for r in api.requests if r.path.endswith("/packets")]


# -- a first pull and reruns ------------------------------------------------------------------------


def test_first_pull_takes_classes_and_bindings_from_the_api_and_every_packet_once(api, gen, tmp_path, capsys):
    packets = REFERENCE_PACKETS + firefly_packets(gen, 450, T0)
    api.add_packets(packets)
    out, raw = tmp_path / "uplinks.parquet", tmp_path / "raw.jsonl"
    assert pull(api, "-o", str(out), "--raw", str(raw)) == 0
    err = capsys.readouterr().err

    rows = read_rows(out)
    assert_exactly_once(rows, packets)
    assert {r["device_class"] for r in rows} == {"Test Device Class", "Room Climate Sensor", "Multi Sensor", None}
    # --raw: the packets exactly as the API returned them, oldest first.
    assert read_rows(raw) == sorted(packets, key=lambda p: p["received_at"])
    # What was asked: the classes, each class's devices, then packets oldest first, 100 at a time.
    paths = [r.path.removeprefix("/api/v1") for r in api.requests]
    assert paths[:2] == ["/rate_limit", "/device_classes"]
    assert sorted(paths[2:6]) == sorted(f"/device_classes/{c}/euis" for c in (2, 7, 12, 99))
    for r in packet_requests(api):
        assert r.query["direction"] == "asc" and r.query["limit_to_last"] == "100"
    assert "device class 99 'Broken Class' is not used" in err
    assert "no state file yet: a first pull" in err
    assert re.search(r"decoded\s+450\n", err) and "device class 99 is not loaded" in err
    assert f"state      {tmp_path / '_decoder-pull-state-firefly.json'}" in err


def test_a_rerun_fetches_only_newer_packets_and_never_replaces_an_output(api, gen, tmp_path, capsys):
    first = firefly_packets(gen, 250, T0)
    api.add_packets(first)
    assert pull(api, "-o", str(tmp_path / "a.jsonl")) == 0
    later = firefly_packets(gen, 40, T0 + timedelta(hours=1))
    api.add_packets(later)
    before = len(api.requests)
    assert pull(api, "-o", str(tmp_path / "b.jsonl")) == 0
    # One page: the rerun starts at its mark, it does not page through the history again.
    assert len(packet_requests(api)[-1:]) == 1 and len(api.requests) - before <= 1 + 1 + 4 + 1
    rows_b = read_rows(tmp_path / "b.jsonl")
    assert [r["packet_id"] for r in rows_b] == uids(later)
    assert_exactly_once(read_rows(tmp_path / "a.jsonl") + rows_b, first + later)

    capsys.readouterr()
    assert pull(api, "-o", str(tmp_path / "c.jsonl")) == 0  # nothing new: no file
    assert not (tmp_path / "c.jsonl").exists()
    err = capsys.readouterr().err
    assert "nothing new: no file written" in err and "first pull" not in err

    kept = (tmp_path / "b.jsonl").read_bytes()
    assert pull(api, "-o", str(tmp_path / "b.jsonl")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to overwrite" in err
    assert (tmp_path / "b.jsonl").read_bytes() == kept


@pytest.mark.parametrize("inclusive", [False, True], ids=["after-exclusive", "after-inclusive"])
def test_packets_arriving_while_a_pull_pages_come_out_exactly_once(clock, gen, tmp_path, monkeypatch, inclusive):
    """New packets land while the pull pages: before and after each page is answered, some in the same
    second as the newest, two stored late (received_at 1 and 2 s before a packet already visible), most
    later. With received_after read either way, each packet is written once by this pull or the next.
    (A packet stored later than OVERLAP after a newer one became visible would be missed: by design.)"""
    # The packets are live: it is their time now (older ones would be settled, with no late ones).
    monkeypatch.setattr(pull_http, "DEFAULT_TIMING", clock.timing(wall=T0 + timedelta(minutes=3)))
    api = FakeFirefly(clock=clock, inclusive=inclusive)
    api.serve_sample_classes(gen, broken=False)
    packets = firefly_packets(gen, 420, T0, per_second=4)
    api.add_packets(packets)
    added: list[dict] = []

    def arrive(seen):
        if seen.path.endswith("/packets") and len(added) < 400:
            newest = datetime.fromisoformat(api.packets[-1]["received_at"])
            batch = firefly_packets(gen, 3, newest, per_second=1e9)  # the newest second
            batch += firefly_packets(gen, 1, newest - timedelta(seconds=1))  # stored late
            batch += firefly_packets(gen, 1, newest - timedelta(seconds=2))  # as late as OVERLAP allows
            batch += firefly_packets(gen, 16, newest + timedelta(seconds=1), per_second=5)
            added.extend(batch)
            api.add_packets(batch)

    api.before = api.after = arrive
    with api:
        assert pull(api, "-o", str(tmp_path / "1.parquet")) == 0
        api.before = api.after = None
        assert pull(api, "-o", str(tmp_path / "2.parquet")) == 0
    assert len(added) >= 300
    first, second = read_rows(tmp_path / "1.parquet"), read_rows(tmp_path / "2.parquet")
    assert second, "packets that arrived after the last page go to the next pull"
    got = collections.Counter(r["packet_id"] for r in first + second)
    assert set(got) == set(uids(packets + added)) and max(got.values()) == 1
    assert all(r["error"] is None for r in first + second)


def test_a_history_pull_asks_again_only_for_the_last_seconds_of_each_page(api, gen, tmp_path, capsys):
    """Settled packets (older than an hour) need no overlap: each re-anchored page repeats only those of
    the last one or two seconds, so the rate limit goes to new packets."""
    packets = firefly_packets(gen, 3000, T0, per_second=3)
    api.add_packets(packets)
    assert pull(api, "-o", str(tmp_path / "out.jsonl")) == 0
    assert_exactly_once(read_rows(tmp_path / "out.jsonl"), packets)
    pages = len(packet_requests(api))
    m = re.search(r"new\s+3,000\s+of ([\d,]+) fetched in (\d+) pages", capsys.readouterr().err)
    fetched = int(m.group(1).replace(",", ""))
    assert int(m.group(2)) == pages <= 33
    assert fetched - 3000 <= pages * 6  # at 3 packets/s: at most two seconds again per page


def test_a_burst_of_more_than_a_page_in_one_second_is_paged_by_offset(api, gen, tmp_path):
    before = firefly_packets(gen, 30, T0)
    burst = firefly_packets(gen, 330, T0 + timedelta(minutes=5), per_second=1e9)  # all in one second
    after = firefly_packets(gen, 30, T0 + timedelta(minutes=10))
    api.add_packets(before + burst + after)
    assert pull(api, "-o", str(tmp_path / "out.jsonl")) == 0
    assert_exactly_once(read_rows(tmp_path / "out.jsonl"), before + burst + after)
    in_burst = [r.query for r in packet_requests(api) if int(r.query.get("offset", 0)) > 0]
    assert [q["offset"] for q in in_burst] == ["100", "200", "300"]
    assert len({q["received_after"] for q in in_burst}) == 1


def test_a_server_that_does_not_page_a_burst_stops_the_pull_with_an_error(clock, gen, tmp_path, capsys):
    api = FakeFirefly(clock=clock, asc_offset="ignore")  # offset ignored when oldest first
    api.serve_sample_classes(gen, broken=False)
    head = firefly_packets(gen, 150, T0)
    api.add_packets(head + firefly_packets(gen, 250, T0 + timedelta(minutes=5), per_second=1e9))
    with api:
        assert pull(api, "-o", str(tmp_path / "out.jsonl")) == 1
    err = capsys.readouterr().err
    assert "returned the same packets as the offset before" in err
    rows = read_rows(tmp_path / "out.jsonl")  # what came before the burst is kept, once
    assert len(rows) == len({r["packet_id"] for r in rows}) >= len(head)


def test_a_server_that_answers_newest_first_is_refused(clock, gen, tmp_path, capsys):
    api = FakeFirefly(clock=clock, honor_direction=False)
    api.serve_sample_classes(gen, broken=False)
    api.add_packets(firefly_packets(gen, 50, T0))
    with api:
        assert pull(api, "-o", str(tmp_path / "out.jsonl")) == 1
    assert "not oldest first" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


# -- rate limit, back-off, retries ----------------------------------------------------------------------


def test_no_request_is_sent_while_the_rate_limit_is_exhausted(clock, gen, tmp_path, capsys):
    api = FakeFirefly(clock=clock, rate=RateLimit(limit=4, window_ms=1500))
    api.serve_sample_classes(gen, broken=False)
    packets = firefly_packets(gen, 900, T0)
    api.add_packets(packets)
    with api:
        assert pull(api, "-o", str(tmp_path / "1.jsonl")) == 0
        api.add_packets(more := firefly_packets(gen, 300, T0 + timedelta(hours=2)))
        assert pull(api, "-o", str(tmp_path / "2.jsonl")) == 0  # at once: the window of run 1 still counts
    assert_exactly_once(read_rows(tmp_path / "1.jsonl") + read_rows(tmp_path / "2.jsonl"), packets + more)
    counted = [r for r in api.requests if not r.path.endswith("/rate_limit")]
    assert len(counted) > 4 * 3, "the test must span several windows"
    assert api.violations == []
    assert not [r for r in api.requests if r.status == 429]
    for prev, cur in itertools.pairwise(counted):
        if prev.remaining == 0:
            assert cur.at >= prev.at + prev.reset_ms / 1000, (prev, cur)
    assert "waits for the rate limit" in capsys.readouterr().err


@pytest.mark.parametrize("jitter", [0.0, 1.0])
def test_429_backs_off_exponentially_with_jitter(clock, gen, tmp_path, monkeypatch, jitter):
    monkeypatch.setattr(pull_http, "DEFAULT_TIMING", clock.timing(random=lambda: jitter))
    api = FakeFirefly(clock=clock)
    api.serve_sample_classes(gen, broken=False)
    packets = firefly_packets(gen, 250, T0)
    api.add_packets(packets)
    with api:
        first_page = 1 + 1 + 3 + 1  # /rate_limit, /device_classes, 3 x euis, then /packets
        api.faults = {first_page + 1: "429", first_page + 2: "429", first_page + 3: "429"}
        assert pull(api, "-o", str(tmp_path / "out.jsonl"), "--retries", "3") == 0
    assert_exactly_once(read_rows(tmp_path / "out.jsonl"), packets)
    at = [r.at for r in api.requests[first_page : first_page + 4]]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    factor = 0.5 + 0.5 * jitter
    assert gaps == pytest.approx([1 * factor, 2 * factor, 4 * factor])


def test_500s_timeouts_dropped_and_cut_responses_are_retried(clock, gen, tmp_path, capsys):
    """The back-off waits are on the fake clock; the slow response really is slower than --timeout."""
    api = FakeFirefly(clock=clock)
    api.serve_sample_classes(gen, broken=False)
    packets = firefly_packets(gen, 520, T0)
    api.add_packets(packets)
    with api:
        n = 1 + 1 + 3
        api.faults = {
            n + 1: "500",
            n + 2: "drop",
            n + 4: "truncate",
            n + 5: ("slow", 1.5),
            n + 7: "garbage",
            n + 8: "500",
            2: "drop",
        }
        started = time.monotonic()
        assert pull(api, "-o", str(tmp_path / "out.jsonl"), "--timeout", "0.5") == 0
        assert time.monotonic() - started < 60
    assert_exactly_once(read_rows(tmp_path / "out.jsonl"), packets)
    err = capsys.readouterr().err
    for kind in ("HTTP 500", "connection failed", "timed out", "the response is not JSON"):
        assert kind in err, kind


def test_an_api_that_keeps_failing_exits_1_keeping_what_was_pulled(api, gen, tmp_path, capsys):
    packets = firefly_packets(gen, 700, T0)
    api.add_packets(packets)
    first_page = 1 + 1 + 4 + 1
    api.faults = {n: "500" for n in range(first_page + 3, first_page + 50)}  # pages 4... fail
    assert pull(api, "-o", str(tmp_path / "1.jsonl"), "--retries", "2") == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(f"{PROG}: error:")]
    assert len(errors) == 1 and "HTTP 500; gave up after 3 attempts" in errors[0]
    assert "a rerun continues after them" in errors[0]
    first = read_rows(tmp_path / "1.jsonl")
    assert 250 <= len(first) <= 300
    api.faults = {}
    assert pull(api, "-o", str(tmp_path / "2.jsonl")) == 0
    assert_exactly_once(first + read_rows(tmp_path / "2.jsonl"), packets)


# -- interruptions ----------------------------------------------------------------------------------------


def test_ctrl_c_stops_after_the_current_request_and_keeps_what_was_pulled(api, gen, tmp_path, capsys):
    packets = firefly_packets(gen, 800, T0)
    api.add_packets(packets)

    def interrupt(seen):
        if seen.path.endswith("/packets") and len(packet_requests(api)) == 4:
            os.kill(os.getpid(), signal.SIGINT)

    api.before = interrupt
    assert pull(api, "--append", str(tmp_path / "ds"), "--format", "jsonl") == 130
    assert "interrupted: the packets pulled so far are written" in capsys.readouterr().err
    first = read_rows(tmp_path / "ds")
    assert 300 <= len(first) <= 400
    api.before = None
    assert pull(api, "--append", str(tmp_path / "ds"), "--format", "jsonl") == 0
    assert_exactly_once(read_rows(tmp_path / "ds"), packets)
    assert len(list((tmp_path / "ds").glob("part-*.jsonl"))) == 2


class Crash(BaseException):
    """Stands for the process dying at a chosen point (nothing after it runs)."""


def test_a_crash_after_the_output_is_renamed_but_before_the_state_is_committed_rolls_forward(
    api, gen, tmp_path, monkeypatch, capsys
):
    from decoder.sources.state import StateFile

    packets = firefly_packets(gen, 300, T0)
    api.add_packets(packets)
    real_commit = StateFile.commit
    monkeypatch.setattr(StateFile, "commit", lambda self, cursor: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        pull(api, "-o", str(tmp_path / "1.jsonl"), "--raw", str(tmp_path / "1.raw.jsonl"))
    monkeypatch.setattr(StateFile, "commit", real_commit)
    assert len(read_rows(tmp_path / "1.jsonl")) == 300  # written, but the state still says "pending"
    api.add_packets(more := firefly_packets(gen, 20, T0 + timedelta(hours=1)))
    assert pull(api, "-o", str(tmp_path / "2.jsonl")) == 0
    assert "continuing after it" in capsys.readouterr().err
    assert_exactly_once(read_rows(tmp_path / "1.jsonl") + read_rows(tmp_path / "2.jsonl"), packets + more)


def test_a_crash_before_the_output_is_renamed_rolls_back_and_removes_its_raw_file(
    api, gen, tmp_path, monkeypatch, capsys
):
    from decoder.sources import pull as pull_run

    packets = firefly_packets(gen, 300, T0)
    api.add_packets(packets)
    real_close = pull_run.RawWriter.close

    def close_then_die(self):
        real_close(self)
        raise Crash()

    monkeypatch.setattr(pull_run.RawWriter, "close", close_then_die)
    with pytest.raises(Crash):
        pull(api, "-o", str(tmp_path / "1.jsonl"), "--raw", str(tmp_path / "1.raw.jsonl"))
    monkeypatch.setattr(pull_run.RawWriter, "close", real_close)
    assert (tmp_path / "1.raw.jsonl").exists() and not (tmp_path / "1.jsonl").exists()
    assert pull(api, "-o", str(tmp_path / "2.jsonl"), "--raw", str(tmp_path / "2.raw.jsonl")) == 0
    assert "removed" in capsys.readouterr().err
    assert not (tmp_path / "1.raw.jsonl").exists()  # its packets are in 2.raw.jsonl: not twice
    assert_exactly_once(read_rows(tmp_path / "2.jsonl"), packets)
    assert read_rows(tmp_path / "2.raw.jsonl") == packets


def test_sigkill_mid_pull_then_a_rerun_loses_nothing_and_repeats_nothing(gen, tmp_path):
    """A real process, killed with SIGKILL while it pages (parts of 300 committed, one open), and run again."""
    api = FakeFirefly()
    api.serve_sample_classes(gen, broken=False)
    packets = firefly_packets(gen, 2000, T0)
    api.add_packets(packets)
    reached = threading.Event()

    def pace(seen):
        if seen.path.endswith("/packets"):
            if len(packet_requests(api)) == 12:
                reached.set()
                time.sleep(5)  # hold the 12th page until the client is dead
            time.sleep(0.02)

    api.before = pace
    env = dict(os.environ, FIREFLY_API_KEY=FIREFLY_KEY, PYTHONPATH=str(ROOT))
    with api:
        cmd = [
            sys.executable,
            "-m",
            "decoder",
            "pull",
            "firefly",
            "--api-url",
            api.url,
            "--append",
            str(tmp_path / "ds"),
            "--raw",
            str(tmp_path / "raw"),
            "--roll-rows",
            "300",
            "--format",
            "parquet",
        ]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert reached.wait(120), proc.stderr.read() if proc.poll() is not None else "no 12th page"
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        committed = read_rows(tmp_path / "ds")
        assert len(list((tmp_path / "ds").glob("part-*.parquet"))) >= 2  # parts of >= 300 committed
        assert 600 <= len(committed) < 1200  # ... and the one open at the 12th page is not
        leftovers = [p.name for p in (tmp_path / "ds").iterdir() if ".tmp-" in p.name]
        assert leftovers, "the killed run leaves its open part under a temporary name"
        api.before = None
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert "the unfinished output of an interrupted run" in rerun.stderr
    assert not [p.name for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    assert_exactly_once(read_rows(tmp_path / "ds"), packets)
    raw = read_rows(tmp_path / "raw")
    assert collections.Counter(uids(raw)) == collections.Counter(uids(packets))


# -- secrets --------------------------------------------------------------------------------------------------


def test_the_api_key_appears_in_no_output_log_state_or_error(clock, gen, tmp_path, capsys, monkeypatch):
    """Pulls that succeed and fail in every way, progress shown as on a terminal, every logger at DEBUG:
    the key is in no message, no log line and no file (outputs, raw packets, state)."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # progress lines too
    log = tmp_path / "debug.log"
    handler = logging.FileHandler(log)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    api = FakeFirefly(clock=clock, rate=RateLimit(limit=3, window_ms=500))
    api.serve_sample_classes(gen)
    api.add_packets(REFERENCE_PACKETS + firefly_packets(gen, 260, T0))
    out = tmp_path / "out"
    keyfile = tmp_path / "key.txt"
    keyfile.write_text(FIREFLY_KEY + "\n")
    statuses = []

    def after(k: int, faults: list) -> dict:
        return {len(api.requests) + k + i: f for i, f in enumerate(faults)}

    try:
        with api:
            statuses.append(pull(api, "-o", str(out / "ok.parquet"), "--raw", str(out / "ok.raw.jsonl.gz")))
            api.add_packets(firefly_packets(gen, 150, T0 + timedelta(hours=1)))
            api.faults = after(3, ["500", "drop", "truncate", "garbage", "429", ("slow", 0.6)])
            statuses.append(pull(api, "-o", str(out / "retried.csv"), "--retries", "8", "--timeout", "0.3"))
            api.faults = after(2, ["401-echo"])
            statuses.append(pull(api, "-o", str(out / "echo.csv")))
            api.faults = {n: "500" for n in range(len(api.requests) + 3, len(api.requests) + 100)}
            statuses.append(pull(api, "-o", str(out / "fails.csv"), "--retries", "2"))
            api.faults = {}
            monkeypatch.setenv("FIREFLY_API_KEY", "not-" + FIREFLY_KEY)
            statuses.append(pull(api, "-o", str(out / "badkey.csv")))
            monkeypatch.delenv("FIREFLY_API_KEY")
            api.add_packets(firefly_packets(gen, 20, T0 + timedelta(hours=2)))
            statuses.append(
                pull(api, "--append", str(out / "ds"), "--api-key-file", str(keyfile), "--raw", str(out / "ds-raw"))
            )
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    captured = capsys.readouterr()
    assert statuses == [0, 0, 1, 1, 1, 0]
    assert any(r.query.get("auth") == FIREFLY_KEY for r in api.requests)  # sent, so the greps could find it
    assert "HTTP 401: the API key was refused: invalid key for /api/v1/" in captured.err
    assert "HTTP 500; gave up" in captured.err and "waiting" in captured.err
    text = log.read_text()
    assert "HTTP Request: GET" in text and "auth=***" in text  # httpx logged its requests, redacted
    files = all_text(tmp_path / "out") + b"".join(p.read_bytes() for p in tmp_path.rglob("*state*"))
    for form in (FIREFLY_KEY, FIREFLY_KEY[:12], FIREFLY_KEY[-12:]):
        assert form not in captured.err and form not in captured.out
        assert form not in text
        assert form.encode() not in files


# -- options -------------------------------------------------------------------------------------------------------


def test_device_streams_continue_from_the_organizations_mark(api, gen, tmp_path):
    packets = firefly_packets(gen, 300, T0)
    api.add_packets(packets)
    assert pull(api, "-o", str(tmp_path / "all.jsonl")) == 0
    devices = sorted({p["device_eui"] for p in packets})[:2]
    later = firefly_packets(gen, 400, T0 + timedelta(hours=1))
    api.add_packets(later)
    args = [a for eui in devices for a in ("--device", eui.lower())]
    assert pull(api, "-o", str(tmp_path / "dev.jsonl"), *args) == 0
    rows = read_rows(tmp_path / "dev.jsonl")
    assert sorted(r["packet_id"] for r in rows) == sorted(p["uid"] for p in later if p["device_eui"] in devices)
    assert {r.path.split("/")[-2] for r in packet_requests(api)[-2:]} == set(devices)
    assert pull(api, "-o", str(tmp_path / "dev2.jsonl"), *args) == 0
    assert not (tmp_path / "dev2.jsonl").exists()  # nothing new for those devices


def test_classes_and_devices_from_files_skip_the_class_requests(api, gen, tmp_path):
    packets = firefly_packets(gen, 120, T0)
    api.add_packets(packets)
    devices = tmp_path / "devices.json"
    devices.write_text(json_map({p["device_eui"]: "Test Device Class" for p in packets}))
    args = [a for c in SAMPLE_CLASSES for a in ("--classes", c)]
    assert pull(api, "-o", str(tmp_path / "out.csv"), *args, "--devices", str(devices)) == 0
    assert not [r for r in api.requests if "device_classes" in r.path]
    table = pcsv.read_csv(tmp_path / "out.csv")
    assert sorted(table["packet_id"].to_pylist()) == sorted(uids(packets))
    assert set(table["device_class"].to_pylist()) == {"Test Device Class"}


def test_append_adds_a_part_per_run_and_per_roll_and_reads_as_one_dataset(api, gen, tmp_path):
    import pyarrow.dataset as ds

    first = firefly_packets(gen, 250, T0)
    api.add_packets(first)
    only_test_class = ["--classes", SAMPLE_CLASSES[0]]
    target = tmp_path / "lake"
    assert pull(api, "--append", str(target), *only_test_class, "--roll-rows", "100") == 0
    api.add_packets(later := firefly_packets(gen, 30, T0 + timedelta(days=1)))
    assert pull(api, "--append", str(target), *only_test_class) == 0
    parts = sorted(p.name for p in target.glob("part-*.parquet"))
    assert len(parts) >= 3  # at least 2 parts of >= 100 in the first run, 1 in the second
    table = ds.dataset(target, format="parquet").to_table()  # the state file and lock are not data
    assert sorted(table["packet_id"].to_pylist()) == sorted(uids(first + later))


def test_since_starts_the_first_pull_at_a_time(api, gen, tmp_path):
    old = firefly_packets(gen, 50, T0)
    new = firefly_packets(gen, 50, T0 + timedelta(days=2))
    api.add_packets(old + new)
    since = (T0 + timedelta(days=1)).isoformat()
    assert pull(api, "-o", str(tmp_path / "out.jsonl"), "--since", since) == 0
    assert [r["packet_id"] for r in read_rows(tmp_path / "out.jsonl")] == uids(new)
    assert packet_requests(api)[0].query["received_after"] == (T0 + timedelta(days=1, seconds=-1)).isoformat()


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["-o", "x.parquet"], None, "no API key: set FIREFLY_API_KEY"),
        (["-o", "-"], FIREFLY_KEY, "stdout cannot be used"),
        (["-o", "x.parquet", "--since", "yesterday"], FIREFLY_KEY, "--since 'yesterday': not an ISO 8601 time"),
        (["-o", "x.parquet", "--device", "12AB"], FIREFLY_KEY, "not a 16-digit hexadecimal DevEUI"),
        (["-o", "x.parquet"], "two words", "contains white space"),
        (["-o", "x.txt"], FIREFLY_KEY, "cannot tell the output format"),
        (["-o", "x.jsonl", "--api-url", "https://api.example/v1?auth=k"], FIREFLY_KEY, "must not have a query"),
        (["-o", "x.jsonl", "--api-url", "http://[::1"], FIREFLY_KEY, "--api-url: Invalid port"),
        (["-o", "x.jsonl", "--roll-rows", "0"], FIREFLY_KEY, "--roll-rows must be at least 1"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(api, tmp_path, monkeypatch, capsys, args, env, message):
    monkeypatch.chdir(tmp_path)
    if env is None:
        monkeypatch.delenv("FIREFLY_API_KEY")
    else:
        monkeypatch.setenv("FIREFLY_API_KEY", env)
    assert pull(api, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.iterdir())


def test_a_state_file_of_another_api_is_refused(api, gen, tmp_path, capsys):
    api.add_packets(firefly_packets(gen, 10, T0))
    state = tmp_path / "s.json"
    assert pull(api, "-o", str(tmp_path / "a.jsonl"), "--state", str(state)) == 0
    capsys.readouterr()
    code = decoder.cli.main(
        ["pull", "firefly", "--api-url", api.url + "x", "-o", str(tmp_path / "b.jsonl"), "--state", str(state)]
    )
    assert code == 2 and "is for the API at" in capsys.readouterr().err


def json_map(mapping: dict) -> str:
    import json

    return json.dumps(mapping)
