"""A process's state token, the disk's, and picking up writes within the bound."""

from __future__ import annotations

import time

from _index_data import TinyExtractor, tiny_flat_database, write_images

from similar_images.db.database import Database
from similar_images.search import SimilarImages
from similar_images.serving.state import DiskState, Freshness, state_of


def open_db(files):
    vectors, index, image_dir = files
    return SimilarImages.open(vectors, index, image_dir=image_dir, extractor=TinyExtractor())


def test_the_token_changes_with_every_committed_write(tmp_path, monkeypatch):
    files = tiny_flat_database(tmp_path, monkeypatch)
    disk = DiskState(files[0])
    first = disk.read()
    assert first == state_of(Database.open(files[0])) and first[1:] == (12, 0)
    writer = open_db(files)
    writer.add(write_images(files[2], [12]), show_progress=False)
    assert disk.read()[1:] == (13, 0) and disk.read()[0] == first[0]
    writer.remove(["img003.png"])
    assert disk.read()[1:] == (13, 1) == state_of(Database.open(files[0]))[1:]
    disk.close()


class Clock:
    """The monotonic clock Freshness reads, moved by the test: "within the bound" must not
    depend on how fast a loaded machine runs the lines between two reads (issue 26)."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_a_write_by_another_process_is_picked_up_once_the_bound_has_passed(tmp_path, monkeypatch):
    from similar_images.serving import state

    files = tiny_flat_database(tmp_path, monkeypatch)
    held = {"db": Database.open(files[0])}

    def reopen():
        held["db"] = Database.open(files[0])
        return state_of(held["db"])

    clock = Clock()
    monkeypatch.setattr(state, "time", clock)
    fresh = Freshness(files[0], state_of(held["db"]), reopen, max_age_s=0.3)
    looked = fresh.looked_at
    clock.now += 0.3  # at the bound, not past it
    assert not fresh.due() and fresh.check() is False and fresh.looked_at == looked  # within the bound: no look
    open_db(files).add(write_images(files[2], [12]), show_progress=False)  # another writer commits
    clock.now += 0.01  # the bound has passed
    assert fresh.due()
    assert fresh.check() is True and len(held["db"]) == 13 and fresh.reopened == 1
    assert fresh.check(force=True) is False and fresh.reopened == 1  # nothing new: nothing reopened


def test_a_zero_bound_looks_before_every_request(tmp_path, monkeypatch):
    files = tiny_flat_database(tmp_path, monkeypatch)
    states = []
    fresh = Freshness(files[0], DiskState(files[0]).read(), lambda: states.append(1) or DiskState(files[0]).read(), 0)
    time.sleep(0.01)
    assert fresh.due() and fresh.check() is False
    open_db(files).remove(["img000.png"])
    time.sleep(0.01)
    assert fresh.check() is True and states == [1]
