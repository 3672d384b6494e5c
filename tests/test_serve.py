"""`decoder serve` as a user runs it: a real server process on 127.0.0.1, real HTTP clients.

One server serves the request tests (shapes, token, 400/401/408/413, slow
clients, metrics); the crash test runs its own, kills it with SIGKILL under
load, restarts it on the same directory and stops that one with SIGTERM.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
from helpers import ROOT, run_cli
from prometheus_client.parser import text_string_to_metric_families
from serve_process import TEST_CLASS, TOKEN, ServeProcess
from stream_process import generated_lines

PACKETS = ROOT / "samples" / "packets"
TIMEOUT = 1.0  # --timeout of the shared server: headers, and again the body


def _rows(directory: Path) -> list[dict]:
    files = sorted(p for p in directory.rglob("part-*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def _comparable(rows: list[dict]) -> list[bytes]:
    """Rows without their line number and input file (decode's), as sorted JSON: a multiset to compare runs by."""
    return sorted(orjson.dumps({k: v for k, v in r.items() if k not in ("line", "input")}, default=str) for r in rows)


def _bodies(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    out = tmp_path_factory.mktemp("serve") / "out"
    errors = out.parent / "errors.jsonl"
    args = ["--classes", TEST_CLASS, "-o", str(out), "--errors", str(errors)]
    args += ["--timeout", str(TIMEOUT), "--max-body", "4K", "--max-delay", "0.2", "--roll-seconds", "1"]
    with ServeProcess(*args) as p:
        p.out, p.errors = out, errors
        yield p


# -- shapes ----------------------------------------------------------------------------


def test_every_shape_of_every_provider_is_accepted_and_decoded_as_decode_does(server, tmp_path):
    firefly, helium = _bodies(PACKETS / "firefly.jsonl"), _bodies(PACKETS / "helium.jsonl")
    mixed = _bodies(PACKETS / "mixed.jsonl")[:40]
    every_kind = (
        "firefly=0.2,helium_event=0.15,helium_body=0.15,helium_integration=0.15,helium_downlink=0.1,"
        "tts=0.15,chirpstack=0.1"
    )
    generated = generated_lines(40, seed=5, mix=every_kind)
    arrays = [b"[" + b",".join(generated[i : i + 3]) + b"]" for i in range(0, 12, 3)]
    pretty = [json.dumps(json.loads(line), indent=2).encode() for line in generated[12:15]]
    bodies = firefly + helium + mixed + generated[15:] + arrays + pretty
    paths = ["/uplinks", "/helium", "/firefly"]
    before = len(_rows(server.out))
    for k, body in enumerate(bodies):
        r = server.post(body, paths[k % 3])
        assert r.status_code == 200, (body[:200], r.text)
        assert r.json() == {"status": "accepted"}
    # The oracle: `decoder decode` of the same values, one per line.
    source = tmp_path / "same.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(json.loads(b)) for b in bodies) + b"\n")
    expected = tmp_path / "expected.parquet"
    assert run_cli("decode", source, "--classes", TEST_CLASS, "-o", expected, "-q").returncode == 0
    want = pq.read_table(expected).to_pylist()
    deadline = time.monotonic() + 30
    while len(_rows(server.out)) - before < len(want) and time.monotonic() < deadline:
        time.sleep(0.2)  # the rows land in Parquet within max-delay + roll-seconds
    got = _rows(server.out)[before:]
    assert _comparable(got) == _comparable(want)
    assert {r["provider"] for r in got} == {"firefly", "helium", "tts", "chirpstack"}


def test_reader_keeps_datr_after_learning():
    """Found by the serve test above (the stage's Reader learns across micro-batches): after one
    plain Firefly packet, a batch of a `datr` packet and a down-packet envelope loses the datr's
    spreading factor (the same batch read fresh, or `decoder decode`, gives SF9)."""
    from decoder.ingest import Reader, normalize_values

    firefly = _bodies(PACKETS / "firefly.jsonl")
    plain, datr = firefly[1], next(b for b in firefly if b'"datr"' in b)
    down = next(b for b in firefly if b'"rx_data"' in b)
    reader = Reader("<stream>")
    normalize_values([plain], reader=reader)
    chunk = normalize_values([datr, down], reader=reader)
    assert chunk.uplinks.column("spreading_factor").to_pylist() == [9]


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"device_eui": "70B3D57ED0000001", "payload": "00"', "malformed JSON"),
        (b'{"hello": "world"}', "unknown shape"),
        (b'"just a string"', "expected a JSON object"),
        (b"", "empty body"),
        (b'[{"hello": 1}]', "unknown shape"),
    ],
)
def test_malformed_or_unknown_shape_is_400_with_the_reason_and_goes_to_errors(server, body, reason):
    rows_before = len(_rows(server.out))
    r = server.post(body)
    assert r.status_code == 400
    assert reason in r.json()["error"]
    records = [json.loads(line) for line in server.errors.read_text().splitlines()]
    mine = [e for e in records if e.get("body") == body.decode()]
    assert mine and reason in mine[-1]["error"] and mine[-1]["path"] == "/uplinks"
    time.sleep(0.5)
    assert len(_rows(server.out)) == rows_before  # nothing of it became a row


def test_the_verdict_of_each_bad_sample_line_is_the_readers(server, tmp_path):
    """samples/packets/bad.jsonl: a line `decoder decode` reports as holding no uplink is a 400,
    every other line (rows that fail to decode included) a 200."""
    lines = [line for line in (PACKETS / "bad.jsonl").read_bytes().split(b"\n") if line.strip()]
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    errors = tmp_path / "errors.jsonl"
    run_cli("decode", source, "--classes", TEST_CLASS, "-o", tmp_path / "x.parquet", "--errors", errors, "-q")
    bad_lines = {e["line"] for e in map(json.loads, errors.read_text().splitlines()) if "packet_id" not in e}
    assert bad_lines  # the sample has some
    for number, line in enumerate(lines, 1):
        r = server.post(line)
        assert r.status_code == (400 if number in bad_lines else 200), (number, line[:120], r.text)


# -- limits ----------------------------------------------------------------------------


def test_token_required_compared_and_never_echoed(server):
    body = generated_lines(1, seed=21)[0]
    assert server.post(body, token=None).status_code == 401
    assert server.post(body, token="wrong").status_code == 401
    assert server.post(body, token=TOKEN + "x").status_code == 401
    r = httpx.post(server.url + "/uplinks", content=body, headers={"Authorization": f"bearer {TOKEN}"})
    assert r.status_code == 200
    assert r.headers.get("www-authenticate") is None
    assert server.get("/metrics", token=None).status_code == 401
    assert server.get("/healthz", token=None).json()["status"] == "ok"
    assert TOKEN not in server.stderr and TOKEN not in server.errors.read_text()


def test_body_over_the_limit_is_413_declared_or_chunked(server):
    big = b'{"hello": "' + b"x" * 5000 + b'"}'
    assert server.post(big).status_code == 413

    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    r = httpx.post(server.url + "/uplinks", content=chunks(), headers=server.headers())
    assert r.status_code == 413
    assert "4,096" in r.json()["error"]


def test_slow_clients_are_cut_off_and_do_not_hold_the_server(server):
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    # Headers that never end: the connection is closed after --timeout.
    slow_headers = socket.create_connection((host, int(port)))
    slow_headers.sendall(b"POST /uplinks HTTP/1.1\r\nHost: x\r\n")
    # Headers complete, a body that never comes: 408.
    slow_body = socket.create_connection((host, int(port)))
    slow_body.sendall(
        f"POST /uplinks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 100\r\n\r\n{{".encode()
    )
    started = time.monotonic()
    assert server.post(generated_lines(1, seed=22)[0]).status_code == 200  # others are served meanwhile
    for sock in (slow_headers, slow_body):
        sock.settimeout(TIMEOUT * 10 + 10)
    assert slow_headers.recv(1000) == b""  # closed
    answer = slow_body.recv(1000)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < TIMEOUT * 10 + 5
    slow_headers.close()
    slow_body.close()


def test_metrics_parse_and_count_what_happened(server):
    before = {f.name: f for f in text_string_to_metric_families(server.get("/metrics").text)}
    good = generated_lines(5, seed=23)
    for body in good:
        assert server.post(body).status_code == 200
    assert server.post(b"{oops").status_code == 400
    time.sleep(1.5)  # one batch and one roll later
    families = {f.name: f for f in text_string_to_metric_families(server.get("/metrics").text)}

    def value(fams, name, **labels):
        for s in fams[name].samples if name in fams else []:
            if s.name.endswith("_total") or s.name == name:
                if all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0

    assert value(families, "decoder_messages") - value(before, "decoder_messages") == 5
    assert (
        value(families, "decoder_rejected", reason="malformed JSON")
        - value(before, "decoder_rejected", reason="malformed JSON")
        == 1
    )
    assert value(families, "decoder_decoded") - value(before, "decoder_decoded") == 5
    assert value(families, "decoder_batches") > 0 and value(families, "decoder_written_bytes") > 0
    histogram = families["decoder_http_request_duration_seconds"]
    count = [s.value for s in histogram.samples if s.name.endswith("_count")][0]
    ingest = ("/uplinks", "/helium", "/firefly")
    requests = sum(s.value for s in families["decoder_http_requests"].samples if s.labels["path"] in ingest)
    assert count == requests
    assert families["decoder_wal_bytes"].type == "gauge"


def test_no_token_means_loopback_only(tmp_path, monkeypatch):
    monkeypatch.delenv("DECODER_TOKEN", raising=False)
    result = run_cli("serve", "--classes", TEST_CLASS, "-o", tmp_path / "o", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert b"loopback only" in result.stderr and b"DECODER_TOKEN" in result.stderr
    empty = tmp_path / "token"
    empty.write_text("\n")
    result = run_cli("serve", "--classes", TEST_CLASS, "-o", tmp_path / "o", "--token-file", empty)
    assert result.returncode == 1 and b"empty" in result.stderr


# -- crashes ---------------------------------------------------------------------------


class _Load:
    """Client threads posting distinct uplinks as fast as answers come; each notes what got a 200."""

    def __init__(self, url: str, lines: list[bytes], clients: int = 8) -> None:
        self.url = url
        self.lines = lines
        self.next = 0
        self.lock = threading.Lock()
        self.acked: set[str] = set()
        self.sent: set[str] = set()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as client:
            while not self.stop.is_set():
                with self.lock:
                    if self.next >= len(self.lines):
                        return
                    line = self.lines[self.next]
                    self.next += 1
                packet = orjson.loads(line)
                pid = packet.get("uid") or packet.get("id")
                self.sent.add(pid)
                try:
                    ok = client.post(self.url + "/uplinks", content=line).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    with self.lock:
                        self.acked.add(pid)

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def test_kill_9_under_load_then_restart_loses_nothing_acknowledged_and_duplicates_nothing(tmp_path):
    """Every uplink that got a 200 is in the Parquet files exactly once after SIGKILL and a
    restart; one that got no answer is there at most once (the test does not send again).
    The restarted server is stopped with SIGTERM: it exits 0 after writing its open batch."""
    out = tmp_path / "out"
    # Firefly packets and Helium device events: each carries an id of its own (its packet_id).
    lines = generated_lines(20_000, seed=31, mix="firefly=0.5,helium_event=0.5")
    args = ["--classes", TEST_CLASS, "-o", str(out), "--roll-rows", "500", "--max-delay", "0.3", "-q"]
    with ServeProcess(*args) as first:
        load = _Load(first.url, lines)
        # Killed once a file has rolled as well: acknowledged rows are in the log first, and a
        # loaded machine acknowledged 800 before the first batch was written (the server's first
        # decode loads its kernels), which left nothing in a file to check the restart against.
        deadline = time.monotonic() + 60
        while (len(load.acked) < 800 or not any(out.rglob("part-*.parquet"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
        load.join()
    acked, sent = set(load.acked), set(load.sent)
    assert len(acked) >= 800
    assert any(out.rglob("part-*.parquet")), "no roll happened before the kill"

    # The restart replays the log; then a last few posts must be written by the SIGTERM drain.
    late = generated_lines(30, seed=32, mix="firefly=1")
    with ServeProcess(*args[:-1], "--max-delay", "30", "--roll-seconds", "600") as second:
        for line in late:
            assert second.post(line).status_code == 200
        started = time.monotonic()
        assert second.stop(signal.SIGTERM) == 0, second.stderr
        assert time.monotonic() - started < 20
    counts: dict[str, int] = {}
    for row in _rows(out):
        counts[row["packet_id"]] = counts.get(row["packet_id"], 0) + 1
    lost = acked - counts.keys()
    twice = {pid for pid, n in counts.items() if n > 1}
    assert not lost, f"{len(lost)} acknowledged uplinks lost"
    assert not twice, f"{len(twice)} uplinks written twice"
    assert set(counts) <= sent | {orjson.loads(x)["uid"] for x in late}
    assert {orjson.loads(x)["uid"] for x in late} <= counts.keys()
    assert not list((out / ".wal").glob("wal-*.log")), "a clean stop leaves no log segment"


def test_a_second_server_on_a_directory_refuses_before_touching_the_first_ones_log(tmp_path):
    out = tmp_path / "out"
    lines = generated_lines(12, seed=41, mix="firefly=1")
    args = ["--classes", TEST_CLASS, "-o", str(out), "--max-delay", "0.2", "--roll-seconds", "600", "-q"]
    with ServeProcess(*args) as first:
        for line in lines[:6]:
            assert first.post(line).status_code == 200  # acknowledged: in the log, not yet in a file
        log = sorted((out / ".wal").rglob("*"))
        before = {p: p.read_bytes() for p in log if p.is_file()}
        assert before and not list(out.rglob("part-*.parquet"))

        res = run_cli("serve", "--port", "0", *args)
        assert res.returncode == 1
        err = res.stderr.decode()
        assert f"in use by another decoder stream or serve (pid {first.proc.pid})" in err and "Traceback" not in err
        assert {p: p.read_bytes() for p in before} == before  # the first server's log untouched

        for line in lines[6:]:
            assert first.post(line).status_code == 200
        assert first.stop(signal.SIGTERM) == 0, first.stderr
    assert sorted(r["packet_id"] for r in _rows(out)) == sorted(orjson.loads(x)["uid"] for x in lines)
