"""What a run may do to the files around it: never replace data it did not write, leave no
temporaries behind (also when killed), name the output when writing it fails, and keep one
stream consumer per directory.

Commands run in this process (helpers.run_cli) unless a real process is the point: a signal,
a lock held by another process, a file size limit.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import ROOT, run_cli
from stream_process import TEST_CLASS, StreamProcess, generated_lines, summary_value

CLASSES = ROOT / "samples" / "classes"


@pytest.fixture(scope="module")
def packets(tmp_path_factory) -> Path:
    """Packets of two classes, with the devices file that binds them."""
    d = tmp_path_factory.mktemp("safety")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "samples" / "generate.py"),
            "-n",
            "400",
            "-o",
            str(d / "packets.jsonl"),
            "--devices-out",
            str(d / "devices.json"),
            "--device-ids-out",
            str(d / "device_ids.json"),
            "--group",
            "Test Device Class:9:2",
            "--group",
            "Room Climate Sensor:6:1",
            "--seed",
            "5",
        ],
        check=True,
        timeout=60,
    )
    return d


def mixed_decode(packets: Path, out: Path, *more) -> list:
    """decode of two classes: a Parquet dataset directory."""
    return [
        "decode",
        packets / "packets.jsonl",
        "--classes",
        CLASSES,
        "--devices",
        packets / "devices.json",
        "--devices",
        packets / "device_ids.json",
        "-o",
        out,
        "-q",
        *more,
    ]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def one_error_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("decoder: error: "), text
    return lines[0]


# -- item 1: a directory this run did not write is never replaced ------------------------------


def test_decode_refuses_a_directory_of_rolling_stream_files(packets, tmp_path):
    rolling = tmp_path / "uplinks"
    res = run_cli(
        "stream",
        "--classes",
        CLASSES / "test_device_class.json",
        "-o",
        rolling,
        "-q",
        stdin=b"\n".join(generated_lines(30, seed=3)),
    )
    assert res.returncode == 0, res.stderr.decode()
    before = tree(rolling)
    assert pq.read_table(rolling).num_rows == 30

    res = run_cli(*mixed_decode(packets, rolling, "--format", "parquet"))
    assert res.returncode == 2
    assert "did not write" in one_error_line(res.stderr)
    assert tree(rolling) == before and pq.read_table(rolling).num_rows == 30
    assert sorted(os.listdir(tmp_path)) == ["uplinks"]  # no temporary left beside it


@pytest.mark.parametrize("content", ["empty", "notes"])
@pytest.mark.parametrize("mixed", [True, False], ids=["dataset", "one file"])
def test_decode_refuses_any_directory_it_did_not_write(packets, tmp_path, content, mixed):
    out = tmp_path / "out.parquet"
    out.mkdir()
    if content == "notes":
        (out / "notes.txt").write_text("keep")
    args = (
        mixed_decode(packets, out)
        if mixed
        else ["decode", packets / "packets.jsonl", "--classes", CLASSES, "--class", "2", "-o", out, "-q"]
    )
    res = run_cli(*args)
    assert res.returncode == 2
    one_error_line(res.stderr)
    assert out.is_dir() and tree(out) == ({"notes.txt": b"keep"} if content == "notes" else {})


def test_decode_replaces_its_own_dataset_but_not_one_a_user_added_to(packets, tmp_path):
    out = tmp_path / "out.parquet"
    assert run_cli(*mixed_decode(packets, out)).returncode == 0
    first = pq.read_table(out).num_rows
    res = run_cli(*mixed_decode(packets, out))  # the same command again: replaced
    assert res.returncode == 0, res.stderr.decode()
    assert pq.read_table(out).num_rows == first
    (out / "device_class=Test Device Class" / "mine.parquet").write_bytes(b"user data")
    res = run_cli(*mixed_decode(packets, out))
    assert res.returncode == 2
    one_error_line(res.stderr)
    assert (out / "device_class=Test Device Class" / "mine.parquet").read_bytes() == b"user data"


def test_a_file_output_still_replaces_a_regular_file_and_never_a_fifo(packets, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    args = ["decode", packets / "packets.jsonl", "--classes", CLASSES, "--class", "2", "-q", "-o"]
    assert run_cli(*args, out).returncode == 0
    assert out.read_text().count("\n") > 100
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    res = run_cli(*args, fifo)
    assert res.returncode == 2 and "not a regular file" in one_error_line(res.stderr)
    assert fifo.is_fifo()


# -- item 4: SIGTERM cleans up like Ctrl-C; dead runs' temporaries are removed --------------------


def test_sigterm_during_decode_removes_the_temporaries_and_exits_143(tmp_path):
    out = tmp_path / "out.parquet"
    errors = tmp_path / "errors.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "decoder", "decode", "-", "--classes", TEST_CLASS, "-o", out, "--errors", errors],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.stdin.write(b"\n".join(generated_lines(200, seed=4)) + b"\n")  # stdin stays open: decode waits
        proc.stdin.flush()
        temporary = tmp_path / f".out.parquet.tmp-{proc.pid}"
        deadline = time.monotonic() + 120
        while not temporary.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
        err = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
    assert err.strip().splitlines() == ["decoder: terminated (SIGTERM); no output was written"], err
    assert os.listdir(tmp_path) == []


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_run_removes_the_temporaries_dead_runs_left_and_nothing_else(packets, tmp_path):
    out = tmp_path / "out.jsonl"
    dead = dead_pid()
    (tmp_path / f".out.jsonl.tmp-{dead}").write_text("half a file")
    (tmp_path / f".out.jsonl.tmp-{os.getppid()}").write_text("a live run's file")  # its parent runs
    (tmp_path / f".out.parquet.tmp-{dead}").mkdir()  # another output's: not ours to touch
    (tmp_path / ".out.jsonl.tmp-notapid").write_text("not our pattern")
    res = run_cli("decode", packets / "packets.jsonl", "--classes", CLASSES, "--class", "2", "-q", "-o", out)
    assert res.returncode == 0, res.stderr.decode()
    assert sorted(os.listdir(tmp_path)) == sorted(
        [f".out.jsonl.tmp-{os.getppid()}", f".out.parquet.tmp-{dead}", ".out.jsonl.tmp-notapid", "out.jsonl"]
    )

    dataset = tmp_path / "mixed.parquet"
    (tmp_path / f".mixed.parquet.tmp-{dead}" / "device_class=X").mkdir(parents=True)
    (tmp_path / f".mixed.parquet.tmp-{dead}" / "device_class=X" / "part-0.parquet").write_bytes(b"PAR1")
    assert run_cli(*mixed_decode(packets, dataset)).returncode == 0
    assert not (tmp_path / f".mixed.parquet.tmp-{dead}").exists()


# -- item 13: a failed write names the output -------------------------------------------------


def _limit_file_size(limit: int):
    def apply() -> None:  # in the child: Python ignores SIGXFSZ, so a write past the limit is EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    """20,000 generated packets: every output of them is bigger than the file size limit below."""
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    path.write_bytes(b"\n".join(generated_lines(20_000, seed=8)) + b"\n")
    return path


@pytest.mark.parametrize("name", ["out.jsonl", "out.parquet", "out.csv.gz", "errors.jsonl"])
def test_a_write_that_fails_names_the_output_not_the_input(big_input, tmp_path, name):
    if name == "errors.jsonl":  # every row fails (bad hex); the output goes to stdout, a pipe
        args = ["decode", big_input, "--classes", TEST_CLASS, "-q", "-o", "-", "--errors", tmp_path / name]
        bad = tmp_path / "bad.jsonl"
        bad.write_bytes(b'{"device_eui": "70B3D57ED0000001", "payload": "0Z", "port": 2, "uid": "u"}\n' * 40_000)
        args[1] = bad
    else:
        args = ["decode", big_input, "--classes", TEST_CLASS, "-q", "-o", tmp_path / name]
    assert run_cli(*args).returncode == 0  # kernels cached: the limited run writes nothing but its output
    for p in tmp_path.iterdir():
        if p.name != "bad.jsonl":
            p.unlink()
    res = subprocess.run(
        [sys.executable, "-m", "decoder", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        preexec_fn=_limit_file_size(64 << 10),
    )
    assert res.returncode == 1, res.stderr.decode()
    line = one_error_line(res.stderr)
    assert line.startswith(f"decoder: error: cannot write {tmp_path / name}: ") and "File too large" in line
    assert "read" not in line
    assert [p.name for p in tmp_path.iterdir() if p.name != "bad.jsonl"] == []  # no partial output, no temporary


# -- item 12: decoder stream --errors that cannot be written ------------------------------------


@pytest.mark.parametrize("where", ["missing directory", "a directory", "under a file", "/dev/full"])
def test_stream_errors_file_that_cannot_be_written_is_one_line_and_exit_1(tmp_path, where):
    (tmp_path / "file").write_text("x")
    target = {
        "missing directory": tmp_path / "nowhere" / "errors.jsonl",
        "a directory": tmp_path,
        "under a file": tmp_path / "file" / "errors.jsonl",
        "/dev/full": Path("/dev/full"),
    }[where]
    if where == "/dev/full" and not target.exists():
        pytest.skip("no /dev/full here")
    res = run_cli("stream", "--classes", TEST_CLASS, "--errors", target, "-q", stdin=b"{not json\n")
    assert res.returncode == 1
    line = one_error_line(res.stderr)
    assert line.startswith(f"decoder: error: cannot write {target}: ")


# -- item 5: one stream consumer per directory ------------------------------------------------------


def test_a_second_stream_consumer_on_a_directory_refuses_and_the_first_loses_nothing(tmp_path):
    out = tmp_path / "uplinks"
    lines = generated_lines(20, seed=6)
    with StreamProcess("--classes", TEST_CLASS, "-o", str(out), "--max-delay", "0.2", "--roll-seconds", "600") as first:
        first.wait_for_stderr("reading stdin")
        for line in lines[:10]:
            first.write(line)
        deadline = time.monotonic() + 60
        while not list(out.glob(".part-*.parquet.tmp")):  # the first consumer's open file
            assert time.monotonic() < deadline, first.stderr
            time.sleep(0.05)
        open_file = next(out.glob(".part-*.parquet.tmp"))

        res = run_cli("stream", "--classes", TEST_CLASS, "-o", out, "-q", stdin=b"\n".join(lines[10:]))
        assert res.returncode == 1
        line = one_error_line(res.stderr)
        assert f"in use by another decoder stream or serve (pid {first.proc.pid})" in line
        assert open_file.exists()  # not taken for a dead consumer's leftover

        for line_ in lines[10:]:
            first.write(line_)
        first.close_stdin()
        assert first.wait() == 0, first.stderr
    assert pq.read_table(out).num_rows == 20 and summary_value(first.stderr, "decoded") == 20
    # the lock is let go at exit: the next consumer starts
    res = run_cli("stream", "--classes", TEST_CLASS, "-o", out, "-q", stdin=b"\n".join(lines[:3]))
    assert res.returncode == 0, res.stderr.decode()
    assert pq.read_table(out).num_rows == 23


# -- item 20: JSON Lines output in bounded pieces --------------------------------------------------


def test_json_lines_are_written_in_pieces_of_bounded_rows(packets):
    """A chunk's rows became Python dicts and one bytes object all at once: JSON Lines peaked
    at 40 times the chunk's size. Each write now holds a bounded number of rows."""
    import io

    import decoder
    from decoder.output import JsonlSink
    from decoder.output.files import _JSON_PIECE_ROWS

    engine = decoder.Engine(decoder.load_classes(CLASSES / "test_device_class.json"))
    lines = (packets / "packets.jsonl").read_bytes().splitlines() * 30  # 12,000 rows in one chunk
    chunk = engine.decode(lines)
    assert chunk.rows > 2 * _JSON_PIECE_ROWS

    class Recorder(io.BytesIO):
        sizes: list[int] = []

        def write(self, data):
            self.sizes.append(data.count(b"\n"))
            return super().write(data)

    out = Recorder()
    sink = JsonlSink("-", engine, stdout=out)
    sink.write(chunk)
    assert max(out.sizes) <= _JSON_PIECE_ROWS and sum(out.sizes) == chunk.rows
    assert out.getvalue() == sink.rows_of(chunk)  # the same bytes as the rows at once


@pytest.mark.parametrize("name", ["out.parquet", "out.arrow", "out.csv"])
def test_an_output_interrupted_while_it_opens_leaves_no_temporary(tmp_path, monkeypatch, name):
    """SIGTERM (or Ctrl-C) can land after a sink made its temporary and before the run could
    abort it: the sink removes its own temporary then."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    import decoder
    from decoder.output import open_sink, parquet

    engine = decoder.Engine(decoder.load_classes(CLASSES / "test_device_class.json"))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(parquet, "open_writer", interrupted)
    monkeypatch.setattr(pa.ipc, "new_file", interrupted)
    monkeypatch.setattr(pcsv, "CSVWriter", interrupted)
    with pytest.raises(KeyboardInterrupt):
        open_sink(str(tmp_path / name), None, engine)
    assert os.listdir(tmp_path) == []
