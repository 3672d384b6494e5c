"""The write-ahead log of `decoder serve` in-process: torn writes, replay, an interrupted roll."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pyarrow.parquet as pq
from serve_process import TEST_CLASS
from stream_process import generated_lines

import decoder
from decoder.output import RollingParquetSink
from decoder.stream import StreamStage
from decoder.stream.wal import FOOTER_LAST, CoveringSink, WriteAheadLog

ROOT = Path(__file__).resolve().parents[1]


def _log(tmp_path: Path, **kw) -> WriteAheadLog:
    return WriteAheadLog(tmp_path / ".wal", tmp_path, **kw)


def _all(wal: WriteAheadLog, start: int | None = None) -> list:
    wal.close()
    return list(wal.messages(start))


def test_a_write_cut_short_is_ignored_and_the_next_run_starts_a_new_segment(tmp_path):
    wal = _log(tmp_path, segment_bytes=200)
    for k in range(6):
        wal.sync(wal.append([b'{"n": %d}' % (2 * k), b'{"n": %d}' % (2 * k + 1)]))
    wal.close()
    last = sorted((tmp_path / ".wal").glob("wal-*.log"))[-1]
    with open(last, "ab") as f:  # half a record: what a power cut during a write leaves
        f.write(b"\x40\x00\x00\x00\x01\x02")
    notes: list[str] = []
    again = _log(tmp_path, log=notes.append)
    assert any("cut short" in n for n in notes)
    assert again.next == 13
    again.sync(again.append([b'{"n": 12}']))
    got = _all(again)
    assert [m.position for m in got] == list(range(1, 14))
    assert [json.loads(m.body)["n"] for m in got] == list(range(13))


def test_the_reader_follows_the_log_and_ends_at_close(tmp_path):
    wal = _log(tmp_path, segment_bytes=150)
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(wal.messages()))
    reader.start()
    for k in range(20):
        wal.sync(wal.append([b"%d" % k]))
    wal.close()
    reader.join(timeout=10)
    assert [m.body for m in got] == [b"%d" % k for k in range(20)]


def _engine_of_two_classes(tmp_path: Path) -> decoder.Engine:
    """The sample devices, every other one bound to a second class: rows go to two partitions."""
    registry = decoder.Registry()
    for path in sorted((ROOT / "samples" / "classes").glob("*.json")):
        registry.add_classes(path)
    devices = {}
    for name in ("devices.json", "device_ids.json"):
        devices.update(json.loads((ROOT / "samples" / "packets" / name).read_text()))
    mixed = {dev: ("Multi Sensor" if k % 2 else cls) for k, (dev, cls) in enumerate(sorted(devices.items()))}
    (tmp_path / "devices.json").write_text(json.dumps(mixed))
    registry.load_devices(tmp_path / "devices.json")
    return decoder.Engine(registry)


def test_an_interrupted_roll_of_several_partition_files_is_finished_at_start(tmp_path, monkeypatch):
    """A crash between the renames of one roll's partition files: the next start renames the
    rest, and replays nothing that roll holds (no row twice, none lost)."""
    engine = _engine_of_two_classes(tmp_path)
    assert engine.mixed
    lines = (ROOT / "samples" / "packets" / "mixed.jsonl").read_bytes().splitlines()[:120]
    wal = _log(tmp_path)
    wal.sync(wal.append(lines))
    sink = CoveringSink(RollingParquetSink(tmp_path, engine), wal)
    stage = StreamStage(engine, max_rows=1000, max_delay=0.2)
    wal.close()
    rows = 0
    for batch in stage.batches(wal.messages()):
        sink.write(batch)
        rows += batch.rows
    assert len(sink.rolling._writers) >= 2  # a roll of several partition files

    renamed = []
    real_replace = os.replace

    def crash_after_first(src, dst):
        if str(dst).endswith(".parquet"):
            if renamed:
                raise SystemExit("power cut")
            renamed.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr("os.replace", crash_after_first)
    try:
        sink.commit()
    except SystemExit:
        pass
    monkeypatch.setattr("os.replace", real_replace)
    sink.rolling.unlock()  # the process died: the OS lets go of its lock on the directory
    assert len(list(tmp_path.rglob("part-*.parquet"))) == 1

    notes: list[str] = []
    again = _log(tmp_path, log=notes.append)
    assert any("finished the interrupted roll" in n for n in notes)
    assert again.covered == 120 and again.pending == 0
    RollingParquetSink(tmp_path, engine)  # the start's sink: removes what is temporary (nothing is left)
    files = list(tmp_path.rglob("part-*.parquet"))
    assert len(files) >= 2
    assert {pq.read_metadata(f).metadata[FOOTER_LAST.encode()] for f in files} == {b"120"}
    assert sum(pq.read_metadata(f).num_rows for f in files) == rows
    assert _all(again) == []  # nothing of that roll is replayed


def test_without_roll_json_the_start_position_comes_from_the_files_footers(tmp_path):
    engine = decoder.Engine(decoder.load_classes(TEST_CLASS))
    wal = _log(tmp_path)
    lines = generated_lines(50, seed=41)
    wal.sync(wal.append(lines))
    wal.close()
    sink = CoveringSink(RollingParquetSink(tmp_path, engine), wal)
    stage = StreamStage(engine, max_rows=30, max_delay=0.2)
    for batch in stage.batches(list(wal.messages())[:30]):
        sink.write(batch)
    sink.commit()
    (tmp_path / ".wal" / "roll.json").unlink()
    notes: list[str] = []
    again = _log(tmp_path, log=notes.append)
    assert again.covered == 30
    assert [m.position for m in _all(again)] == list(range(31, 51))
