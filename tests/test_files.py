"""files.atomic_write: text, bytes or a writer function; a failed write leaves the old file and no temp file."""

import pytest

from ganaug.files import atomic_write


def test_atomic_write_takes_text_bytes_or_a_writer(tmp_path):
    path = tmp_path / "out"
    atomic_write(path, "text\n")
    assert path.read_text() == "text\n"
    atomic_write(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    atomic_write(path, lambda file: file.write(b"written"))
    assert path.read_bytes() == b"written"


def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "out"
    atomic_write(path, "old")

    def fail(file):
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    with pytest.raises(TypeError):
        atomic_write(path, None)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
