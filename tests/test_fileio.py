"""cvil.fileio: the one atomic write (temporaries, fsync, ordered renames) and the file checksum."""

from __future__ import annotations

import hashlib

import pytest

from cvil import fileio
from cvil.fileio import atomic_paths, atomic_write, sha256_file


def test_atomic_write_takes_text_bytes_or_a_writer_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "sub" / "a.json"
    assert atomic_write(out, "é\n") == out and out.read_bytes() == "é\n".encode()
    atomic_write(out, b"\x00\x01")
    assert out.read_bytes() == b"\x00\x01"
    atomic_write(out, lambda p: p.write_text("w"))
    assert out.read_text() == "w"
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_every_temporary(tmp_path):
    a, b = tmp_path / "data", tmp_path / "index"
    atomic_write(a, "old")

    def fail(p):
        p.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(a, fail)
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_paths(a, b) as (ta, tb):
            ta.write_text("new")
            fail(tb)
    assert a.read_text() == "old" and not b.exists()
    assert not fileio.tmp_path(a).exists() and not fileio.tmp_path(b).exists()


def test_several_files_are_all_written_before_the_first_rename(tmp_path):
    a, b = tmp_path / "ckpt.pt", tmp_path / "ckpt.pt.sha256"
    with atomic_paths(a, b) as (ta, tb):
        assert (ta.name, tb.name) == ("ckpt.pt.tmp", "ckpt.pt.sha256.tmp")
        ta.write_bytes(b"weights")
        tb.write_text(sha256_file(ta))
        assert not a.exists() and not b.exists()
    assert b.read_text() == hashlib.sha256(b"weights").hexdigest() == sha256_file(a)
