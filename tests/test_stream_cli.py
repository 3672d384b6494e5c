"""`decoder stream` on stdin, as a pipeline stage: a subprocess fed by a slow writer."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from helpers import SCHEDULING_SLACK
from stream_process import TEST_CLASS, StreamProcess, summary_value
from stream_process import generated_lines as _lines

MAX_DELAY = 0.5


def _ids(rows) -> list[str]:
    return [r["packet_id"] for r in rows]


def test_slow_writer_gets_each_row_before_writing_the_next_and_eof_exits_0():
    lines = _lines(8, seed=11)
    with StreamProcess("--classes", TEST_CLASS, "--max-delay", str(MAX_DELAY)) as p:
        p.wait_for_stderr("reading stdin")
        latencies = []
        got = []
        for line in lines:
            written = time.monotonic()
            p.write(line)
            ((arrived, row),) = p.rows(1, timeout=10)
            latencies.append(arrived - written)
            got.append(row)
            time.sleep(0.15)  # the writer is slow: the stage must not wait for more
        p.close_stdin()
        assert p.wait() == 0, p.stderr
        assert p.rest() == []
    expected = [orjson.loads(line) for line in lines]
    assert [r["line"] for r in got] == list(range(1, len(lines) + 1))
    assert all(r["error"] is None and r["decoded"] for r in got), got
    assert len(set(_ids(got))) == len(lines)
    # One message per batch here: each came out within max_delay of being written
    # (the first after the kernels were already loaded at startup).
    assert max(latencies) < MAX_DELAY + SCHEDULING_SLACK, latencies
    assert summary_value(p.stderr, "messages") == len(expected)
    assert summary_value(p.stderr, "decoded") == len(lines)


def test_burst_is_one_batch_and_the_rows_keep_input_order():
    lines = _lines(3000, seed=12)
    with StreamProcess("--classes", TEST_CLASS, "--max-rows", "1000", "--max-delay", "5") as p:
        p.wait_for_stderr("reading stdin")
        p.proc.stdin.write(b"\n".join(lines) + b"\n")
        p.proc.stdin.flush()
        rows = p.rows(3000, timeout=30)  # full batches go out at once, without waiting for the delay
        p.close_stdin()
        assert p.wait() == 0
    assert [r["line"] for _, r in rows] == list(range(1, 3001))
    assert summary_value(p.stderr, "messages") == 3000
    assert "3 batches" in p.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_hands_on_the_open_batch_and_exits_0(sig):
    lines = _lines(5, seed=13)
    with StreamProcess("--classes", TEST_CLASS, "--max-delay", "60") as p:
        p.wait_for_stderr("reading stdin")
        for line in lines:
            p.write(line)
        time.sleep(1.0)  # read into the open batch, which would wait a minute
        assert p.out.empty()
        p.signal(sig)
        assert p.wait(timeout=20) == 0, p.stderr
        rows = p.rest()
    assert len(rows) == 5 and [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert "Traceback" not in p.stderr


def test_bad_messages_go_to_the_errors_file_with_their_line(tmp_path: Path):
    good = _lines(3, seed=14, mix="firefly=1")
    messages = [
        good[0],
        b"{not json",
        good[1],
        b'{"hello": "world"}',
        b"",
        good[2],
        b'{"uid":"u-short","device_eui":"0102030405060708","payload":"00","port":1}',
    ]
    errors = tmp_path / "errors.jsonl"
    with StreamProcess("--classes", TEST_CLASS, "--errors", str(errors)) as p:
        p.proc.stdin.write(b"\n".join(messages) + b"\n")
        p.close_stdin()
        assert p.wait() == 0
        rows = p.rest()
    assert [r["line"] for r in rows] == [1, 3, 6, 7]
    assert rows[-1]["error"].startswith("payload too short")
    records = [orjson.loads(line) for line in errors.read_bytes().splitlines()]
    assert [(r["line"], r["position"]) for r in records] == [(2, 2), (4, 4), (7, 7)]
    # The summary reconciles: messages = blank + uplinks + skipped + bad (one value per line here).
    p.wait_for_stderr("messages/s")
    err = p.stderr
    assert "(1 blank;" in err
    parts = [summary_value(err, k) for k in ("uplinks", "skipped", "bad")]
    assert summary_value(err, "messages") == 1 + sum(parts)
    assert records[0]["error"].startswith("malformed JSON")
    assert records[2]["packet_id"] == "u-short"
    assert '"line"' not in err  # the error records went to the file, not stderr


def test_stdin_lines_are_whole_however_the_pipe_cuts_them():
    import os
    import threading

    from decoder.cli import _stdin_lines

    long_line = b'{"x": "' + b"a" * 3_000_000 + b'"}'
    data = b"one\n" + long_line + b"\n\ntwo\nthree"
    r, w = os.pipe()

    def feed():
        for k in range(0, len(data), 70_001):  # reads end mid-line, mid-newline-run
            os.write(w, data[k : k + 70_001])
        os.close(w)

    t = threading.Thread(target=feed)
    t.start()
    try:
        got = list(_stdin_lines(r))
    finally:
        t.join()
        os.close(r)
    assert got == [b"one", long_line, b"", b"two", b"three"]


def test_rolling_parquet_files_on_stdin(tmp_path: Path):
    lines = _lines(2500, seed=15)
    out = tmp_path / "out"
    with StreamProcess("--classes", TEST_CLASS, "-o", str(out), "--max-rows", "500", "--roll-rows", "1000") as p:
        p.proc.stdin.write(b"\n".join(lines) + b"\n")
        p.close_stdin()
        assert p.wait() == 0, p.stderr
    files = sorted(out.glob("part-*.parquet"))
    assert [pq.read_metadata(f).num_rows for f in files] == [1000, 1000, 500]
    assert [f.name for f in out.glob(".*")] == [".decoder.lock"]  # no temporary file left, only the lock
    table = pq.read_table(out)
    assert table.num_rows == 2500
    assert sorted(table["line"].to_pylist()) == list(range(1, 2501))
    assert "3 Parquet files" in p.stderr


def test_usage_errors_exit_2():
    for args in (["--max-rows", "0"], ["--max-delay", "0"], ["--mqtt", "http://x/y"]):
        with StreamProcess("--classes", TEST_CLASS, *args, stdin=False) as p:
            assert p.wait() == 2, args
            assert "error" in p.stderr


def test_unreachable_broker_is_one_line_and_exit_1():
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with StreamProcess("--mqtt", f"mqtt://127.0.0.1:{port}/up/#", "--classes", TEST_CLASS, stdin=False) as p:
        assert p.wait() == 1
    assert p.stderr.startswith("decoder: error: cannot connect to mqtt://127.0.0.1:") and "\n" not in p.stderr
