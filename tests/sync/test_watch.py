"""The watcher: a photo copied into the folder is found by search within 10 s, a photo deleted
is gone within 10 s (events, and periodic scans); bursts of events make one sync; editors'
temporary files are seen under their final name; `similar-images watch` end to end."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _index_data import pattern_image, register_tiny
from _sync_data import CountingTiny, make_folder
from _waiting import patience
from _waiting import wait_until as _wait_until

from similar_images.search import SimilarImages
from similar_images.sync import FolderWatcher, default_vectors, sync_folder

DEADLINE_S = 10.0
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def synced(tmp_path, monkeypatch):
    register_tiny(monkeypatch)
    folder = tmp_path / "photos"
    make_folder(folder, range(6))
    sync_folder(folder, extractor=CountingTiny(), show_progress=False)
    outside = tmp_path / "incoming"
    make_folder(outside, [30, 31])
    return folder, outside


def wait_until(condition, deadline_s: float = DEADLINE_S) -> float:
    return _wait_until(condition, deadline_s, poll_s=0.25)


def top_hit(folder: Path, query: Path) -> str | None:
    db = SimilarImages.open(default_vectors(folder), trust=True)  # light: the test polls it
    hits = db.search(str(query), k=1)
    return hits[0].path if hits and hits[0].score >= 0.9999 else None


def watcher_for(folder: Path, **options) -> FolderWatcher:
    model = CountingTiny()
    return FolderWatcher(folder, lambda: sync_folder(folder, extractor=model, show_progress=False), **options)


@pytest.mark.parametrize("mode", ["events", "poll"])
def test_a_copied_photo_is_found_and_a_deleted_one_disappears_within_10_s(synced, mode):
    folder, outside = synced
    with watcher_for(folder, poll_s=1.0 if mode == "poll" else None) as watcher:
        assert watcher.mode == mode
        shutil.copy(outside / "img030.png", folder / "new.png")
        wait_until(lambda: top_hit(folder, outside / "img030.png") == "new.png")
        query = folder / "img002.png"
        kept = query.parent.parent / "img002-kept.png"
        shutil.copy(query, kept)
        query.unlink()
        wait_until(lambda: top_hit(folder, kept) is None)
    assert len(SimilarImages.open(default_vectors(folder))) == 6


def test_an_editor_writing_a_temporary_file_then_renaming_it(synced):
    folder, outside = synced
    with watcher_for(folder):
        temporary = folder / ".img031.png.tmp~"  # hidden, and not an image name: never indexed itself
        pattern_image(31).save(temporary, format="PNG")
        os.replace(temporary, folder / "edited.png")
        wait_until(lambda: top_hit(folder, outside / "img031.png") == "edited.png")
    names = set(SimilarImages.open(default_vectors(folder)).names)
    assert "edited.png" in names and not any(n.startswith(".") for n in names)


def test_a_burst_of_events_makes_one_sync(tmp_path):
    runs = []
    # quiet_s well above the gaps between this burst's events, even where a loaded machine
    # pauses the test for a moment (issue 26): a pause longer than quiet_s ends a burst
    quiet_s = 2.0
    watcher = FolderWatcher(tmp_path, lambda: runs.append(time.monotonic()), quiet_s=quiet_s, max_delay_s=30).start()
    try:
        for i in range(20):
            watcher.notice(str(tmp_path / f"p{i}.jpg"))
            time.sleep(0.01)
        watcher.notice(str(tmp_path / "notes.txt"))  # not an image: ignored
        wait_until(lambda: len(runs) == 1)
        time.sleep(quiet_s + 0.5)
        assert len(runs) == 1
        watcher.notice(str(tmp_path / ".hidden.jpg"))
        watcher.notice(str(tmp_path / "notes.txt"))
        time.sleep(quiet_s + 0.5)
        assert len(runs) == 1  # hidden and non-image names never wake it
    finally:
        watcher.stop()


def test_a_failing_sync_does_not_end_the_watch(tmp_path):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk briefly gone")
    with FolderWatcher(tmp_path, flaky, quiet_s=0.1) as watcher:
        watcher.notice()
        wait_until(lambda: len(calls) == 1)
        watcher.notice()
        wait_until(lambda: watcher.syncs == 1)


WATCH = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/sync"]
from similar_images import features
features.MODELS["tiny"] = "_index_data:create_tiny"
from similar_images.cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_watch_command_end_to_end(synced, tmp_path, stop):
    folder, outside = synced
    script = tmp_path / "watch.py"
    script.write_text(WATCH)
    # SIGINT as at a terminal: a suite started in the background of a script inherits it ignored
    proc = subprocess.Popen([sys.executable, str(script), str(TESTS), "watch", str(folder), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("watching" in line for line in lines) or proc.poll() is not None, patience(120))
        assert proc.poll() is None, "".join(lines)
        shutil.copy(outside / "img030.png", folder / "dropped.png")
        wait_until(lambda: top_hit(folder, outside / "img030.png") == "dropped.png")
    finally:
        proc.send_signal(stop)  # Ctrl-C, or a service manager's stop: both end with "stopped"
        proc.wait(timeout=patience(60))
        reader.join(timeout=patience(10))
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "0 added, 0 removed, 0 changed, 0 renamed, 0 skipped, 6 unchanged" in out
    assert "search it: similar-images search --vectors" in out and "stopped" in out


def test_without_watchdog_it_falls_back_to_scans(synced, monkeypatch):
    folder, outside = synced
    monkeypatch.setitem(sys.modules, "watchdog.observers", None)  # an import of it fails, as when not installed
    with watcher_for(folder) as watcher:
        assert watcher.mode == "poll" and watcher.poll_s == 10.0
