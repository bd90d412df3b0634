"""Atomic writes: the new content or the old one, never a half-written file, and no temporary file left."""

from __future__ import annotations

import json

import pytest

from seapeft_monailabel.atomic import atomic_path, staged_folder, write_bytes_atomic, write_json_atomic, write_text_atomic


class _Boom(Exception):
    pass


def test_writes_replace_the_file_and_leave_nothing_else(tmp_path):
    path = tmp_path / "sub" / "data.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2}, indent=1)
    assert json.loads(path.read_text()) == {"a": 2} and path.read_text().endswith("}\n")
    write_text_atomic(tmp_path / "t.md", "héllo")
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == "héllo" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b.bin", "data.json", "sub", "t.md"]


def test_an_error_mid_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with pytest.raises(_Boom):
        with atomic_path(path) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".tmp.pt")  # the writer may infer the format
            tmp.write_bytes(b"half")
            raise _Boom
    with pytest.raises(TypeError):
        write_json_atomic(path, {"not json": object()})
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_staged_folder_moves_everything_in_at_the_end_or_nothing(tmp_path):
    out = tmp_path / "out"
    with staged_folder(out) as staging:
        (staging / "a.txt").write_text("a")
        (staging / "folder").mkdir()
        (staging / "folder" / "b.txt").write_text("b")
        assert not (out / "a.txt").exists()
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "folder"] and (out / "folder" / "b.txt").read_text() == "b"
    with pytest.raises(_Boom):
        with staged_folder(out) as staging:
            (staging / "a.txt").write_text("new")
            raise _Boom
    assert (out / "a.txt").read_text() == "a" and sorted(p.name for p in out.iterdir()) == ["a.txt", "folder"]
