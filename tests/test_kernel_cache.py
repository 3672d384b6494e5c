"""Kernels are imported only from a cache directory that is the user's alone, and only as the
source that was generated: a planted or damaged ``k_<sha256>.py`` is never run."""

from __future__ import annotations

import hashlib
import itertools
import os
import stat
from pathlib import Path

import pytest

import decoder
from decoder.compiler import cache

_unique = itertools.count()


def fresh_class():
    """A class whose kernel no earlier test built (the process memoizes kernels by source)."""
    k = next(_unique) + os.getpid() * 1000
    return decoder.compile(
        {
            "name": f"Cache test {k}",
            "script": {
                "parseElements": [{"type": "int", "target": "a", "bits": "8"}],
                "calculateElements": [{"target": "y", "formula": f"a * 2 + {k}"}],
            },
        }
    ), k


def kernel_file(dc) -> str:
    return f"k_{hashlib.sha256(cache._runtime_fingerprint() + dc.source.encode()).hexdigest()}.py"


def decodes(dc, k: int) -> None:
    assert dc.decode(["05"]).to_pylist() == [{"a": 5, "y": 10.0 + k}]


def test_a_new_cache_directory_is_created_private(tmp_path, monkeypatch):
    where = tmp_path / "new" / "kernels"
    monkeypatch.setenv(cache.CACHE_ENV, str(where))
    dc, k = fresh_class()
    decodes(dc, k)
    assert stat.S_IMODE(where.stat().st_mode) == 0o700
    assert (where / kernel_file(dc)).read_text() == dc.source


def test_a_directory_others_can_write_to_is_not_used(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "planted").write_text("x")
    monkeypatch.setenv(cache.CACHE_ENV, str(shared))
    dc, k = fresh_class()
    with pytest.warns(RuntimeWarning, match="others can write to it"):
        decodes(dc, k)
    assert sorted(os.listdir(shared)) == ["planted"]  # nothing written there, nothing read
    assert not str(dc.kernel.path).startswith(str(shared))


def test_a_directory_of_another_user_is_not_used(tmp_path, monkeypatch):
    if os.getuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o755)
        os.chown(theirs, 65534, 65534)  # nobody
    else:
        theirs = Path("/")  # root's; not ours
    monkeypatch.setenv(cache.CACHE_ENV, str(theirs))
    dc, k = fresh_class()
    with pytest.warns(RuntimeWarning, match="belongs to another user"):
        decodes(dc, k)
    assert not (theirs / kernel_file(dc)).exists()


def test_a_kernel_file_that_is_not_its_source_is_never_run_and_is_rewritten(tmp_path, monkeypatch):
    kernels = tmp_path / "kernels"
    kernels.mkdir(mode=0o700)
    monkeypatch.setenv(cache.CACHE_ENV, str(kernels))
    dc, k = fresh_class()
    marker = tmp_path / "it ran"
    planted = kernels / kernel_file(dc)
    planted.write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\n"
        "def kernel(*a):\n    pass\nkernel_fixed = kernel\n"
    )
    decodes(dc, k)  # the generated kernel, not the planted one
    assert not marker.exists()
    assert planted.read_text() == dc.source


def test_a_kernel_file_cut_short_is_rewritten(tmp_path, monkeypatch):
    kernels = tmp_path / "kernels"
    kernels.mkdir(mode=0o700)
    monkeypatch.setenv(cache.CACHE_ENV, str(kernels))
    dc, k = fresh_class()
    (kernels / kernel_file(dc)).write_text(dc.source[: len(dc.source) // 2])
    decodes(dc, k)
    assert (kernels / kernel_file(dc)).read_text() == dc.source


def test_the_test_suite_compiles_into_a_private_directory():
    """conftest.py gives each run its own cache (a fixed shared /tmp path could be another
    user's); whatever the run was given must pass the same check."""
    assert os.environ[cache.CACHE_ENV] != "/tmp/decoder-test-cache"
    assert cache.untrusted(cache.cache_dir()) is None


def test_the_command_line_says_so_in_one_warning_line(tmp_path):
    """In a real process (pytest would capture the warning in process)."""
    import subprocess
    import sys

    from helpers import ROOT

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    packets = tmp_path / "p.jsonl"
    packets.write_text(
        '{"device_eui": "70B3D57ED0000001", "payload": "7F400000C000000064", "port": 2,'
        ' "received_at": "2016-06-22T09:35:35", "uid": "u-1", "fcnt": 1, "gwrx": []}\n'
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "decoder",
            "decode",
            packets,
            "--classes",
            ROOT / "samples" / "classes" / "test_device_class.json",
        ]
        + ["-o", tmp_path / "out.jsonl", "-q"],
        cwd=ROOT,
        env={**os.environ, cache.CACHE_ENV: str(shared)},
        capture_output=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr.decode()
    assert res.stderr.decode().splitlines() == [
        f"decoder: warning: not using the kernel cache {shared}: others can write to it; kernels are "
        f"compiled for this process only (set {cache.CACHE_ENV} to a directory of your own)"
    ]
    assert os.listdir(shared) == []


def test_a_command_process_loads_cached_kernels_without_the_compilers_set_up(tmp_path):
    """The command loads cached machine code without numba's preparations to compile (a third of
    a one-packet run) or the modules of numba's own implementations compiled into it, and
    decodes the same rows as a process that prepared in full."""
    import subprocess
    import sys

    import pyarrow.parquet as pq
    from helpers import ROOT

    packets = tmp_path / "p.jsonl"
    packets.write_text(
        '{"device_eui": "70B3D57ED0000001", "payload": "7F400000C000000064", "port": 2,'
        ' "received_at": "2016-06-22T09:35:35", "uid": "u-1", "fcnt": 1, "gwrx": [{"rssi": -80, "lsnr": 2.5}]}\n'
        '{"dev_eui": "70B3D57ED0000002", "payload": "f0AAAMAAAABk", "port": 2, "fcnt": 2,'
        ' "reported_at": 1466588135000, "hotspots": [{"rssi": -90, "snr": 1.0}]}\n'
    )
    args = ["decode", str(packets), "--classes", str(ROOT / "samples" / "classes" / "test_device_class.json"), "-q"]
    script = (
        "import sys, decoder.cli as cli\n"
        "if sys.argv[1] == 'lean': cli._keep_start_up_lean()\n"  # as `decoder ...` does for itself
        "code = cli.main(sys.argv[2:])\n"
        "print('set up to compile:', 'numba.np.linalg' in sys.modules, 'numba.np.arrayobj' in sys.modules)\n"
        "sys.exit(code)\n"
    )

    def run(mode: str) -> str:
        out = tmp_path / f"{mode}.parquet"
        res = subprocess.run(
            [sys.executable, "-c", script, mode, *args, "-o", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    assert run("full") == "set up to compile: True True"  # (and whatever was not cached yet is now)
    assert run("lean") == "set up to compile: False False"
    full, lean = pq.read_table(tmp_path / "full.parquet"), pq.read_table(tmp_path / "lean.parquet")
    assert lean.num_rows == 2 and lean.drop(["input"]).equals(full.drop(["input"]))
    engine = decoder.Engine(decoder.Registry.from_files([ROOT / "samples" / "classes" / "test_device_class.json"]))
    decoded = lean.column("decoded").to_pylist()
    assert None not in decoded and decoded == engine.decode_packets(packets).column("decoded").to_pylist()


def _class_doc(k: int, formula: str) -> dict:
    return {
        "name": f"Build cache test {k}",
        "script": {
            "parseElements": [{"type": "int", "target": "a", "bits": "8"}],
            "calculateElements": [{"target": "y", "formula": formula}],
        },
    }


def test_a_class_built_before_is_read_back_and_a_changed_or_damaged_one_built_again(tmp_path, monkeypatch):
    """Building a class (its formulas parsed by lark, lowered, its kernel's source generated)
    is kept in the cache directory: the same class is read back without building it, a class
    whose script changed is built, and a damaged file is built again and replaced."""
    from decoder.compiler import lower as lowering

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    k = next(_unique) + os.getpid() * 1000
    decodes(decoder.compile(_class_doc(k, f"a * 2 + {k}")), k)
    (kept,) = tmp_path.glob("c_*.pickle")

    def no_building(spec):
        raise AssertionError("built again")

    with monkeypatch.context() as patched:
        patched.setattr(lowering, "lower", no_building)
        decodes(decoder.compile(_class_doc(k, f"a * 2 + {k}")), k)  # read back
        with pytest.raises(AssertionError, match="built again"):
            decoder.compile(_class_doc(k, f"a * 3 + {k}"))
    changed = decoder.compile(_class_doc(k, f"a * 3 + {k}"))
    assert changed.decode(["05"]).to_pylist() == [{"a": 5, "y": 15.0 + k}]
    assert len(list(tmp_path.glob("c_*.pickle"))) == 2

    kept.write_bytes(b"damaged")
    decodes(decoder.compile(_class_doc(k, f"a * 2 + {k}")), k)
    assert kept.read_bytes() != b"damaged"
    with monkeypatch.context() as patched:
        patched.setattr(lowering, "lower", no_building)
        decodes(decoder.compile(_class_doc(k, f"a * 2 + {k}")), k)  # the replacement reads back
