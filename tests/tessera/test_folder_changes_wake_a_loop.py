"""A folder watch wakes its loop when an entry is made or removed, and says so where it cannot watch."""

from __future__ import annotations

import threading

from tessera.dirwatch import FolderChanges


def test_a_new_and_a_removed_entry_each_wake_the_loop(tmp_path):
    woke = threading.Event()
    watch = FolderChanges(str(tmp_path), woke.set)
    assert watch.start()
    try:
        (tmp_path / "kubelet.sock").write_text("")
        assert woke.wait(30), "no wake after a new entry"
        woke.clear()
        (tmp_path / "kubelet.sock").unlink()
        assert woke.wait(30), "no wake after an entry was removed"
    finally:
        watch.stop()


def test_a_folder_that_cannot_be_watched_leaves_the_loop_to_its_poll(tmp_path, capsys):
    watch = FolderChanges(str(tmp_path / "missing"), lambda: None)
    assert not watch.start()
    watch.stop()  # nothing started: stopping is harmless
    assert "folder_watch_unavailable" in capsys.readouterr().out
