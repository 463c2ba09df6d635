"""The output-folder rule: a command replaces only a folder it wrote itself, never the user's."""

import os
import stat

import pytest

from common.outputs import MARKER, check_output_folder, output_folder, write_file_atomic


class Refused(Exception):
    pass


def _write(out, kind, files):
    with output_folder(out, kind, Refused) as staging:
        for name, text in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_text(text)


def test_a_new_folder_is_written_with_its_marker(tmp_path):
    out = tmp_path / "rep"
    _write(out, "report", {"a.csv": "1", "figures/b.png": "2"})
    assert (out / "a.csv").read_text() == "1"
    assert (out / MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no staging left behind


def test_its_own_output_is_replaced_whole(tmp_path):
    out = tmp_path / "rep"
    _write(out, "report", {"a.csv": "1", "old.csv": "x"})
    _write(out, "report", {"a.csv": "2"})
    assert (out / "a.csv").read_text() == "2"
    assert not (out / "old.csv").exists()


def test_a_users_file_in_the_folder_is_never_deleted(tmp_path):
    out = tmp_path / "rep"
    _write(out, "report", {"a.csv": "1"})
    (out / "ratings.db").write_bytes(b"precious")
    with pytest.raises(Refused, match="ratings.db"):
        _write(out, "report", {"a.csv": "2"})
    assert (out / "ratings.db").read_bytes() == b"precious"
    assert (out / "a.csv").read_text() == "1"


def test_a_folder_without_marker_or_of_another_kind_is_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(Refused, match="not written by the report"):
        check_output_folder(mine, "report", Refused)
    other = tmp_path / "set"
    _write(other, "stimulus set", {"manifest.json": "{}"})
    with pytest.raises(Refused, match="stimulus set"):
        _write(other, "report", {"a.csv": "1"})
    assert (mine / "notes.txt").read_text() == "keep"


def test_the_input_file_given_as_out_is_refused(tmp_path):
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("x")
    with pytest.raises(Refused, match="found a file"):
        _write(ratings, "report", {"a.csv": "1"})
    assert ratings.read_text() == "x"


def test_an_empty_folder_may_be_filled(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    _write(out, "report", {"a.csv": "1"})
    assert (out / "a.csv").read_text() == "1"


def test_a_failure_inside_leaves_the_old_output(tmp_path):
    out = tmp_path / "rep"
    _write(out, "report", {"a.csv": "1"})
    with pytest.raises(RuntimeError), output_folder(out, "report", Refused) as staging:
        (staging / "a.csv").write_text("half")
        raise RuntimeError("boom")
    assert (out / "a.csv").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_a_path_under_a_file_is_a_named_error(tmp_path):
    # Root can write anywhere, but nobody can create a folder below a regular file: the
    # portable way to make a path unwritable in a test that also runs as root.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(Refused, match="cannot write"):
        _write(blocker / "rep", "report", {"a.csv": "1"})
    with pytest.raises(Refused, match="cannot write"):
        write_file_atomic(blocker / "out.csv", "a", Refused)


def test_atomic_file_modes(tmp_path):
    private = write_file_atomic(tmp_path / "p.csv", "a,b\n", Refused, mode=0o600)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    old = os.umask(0o022)
    try:
        public = write_file_atomic(tmp_path / "m.json", b"{}", Refused)
    finally:
        os.umask(old)
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert public.read_bytes() == b"{}"
