"""The demo: offline sample photos, the results page and contact sheet, the command."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from similar_images import sample_photos
from similar_images.report import ShownResult, contact_sheet, write_contact_sheet, write_results_html

# --- sample photos --------------------------------------------------------------------------


def test_every_sample_photo_loads_offline(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("sample photos must not use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    for name in sample_photos.PHOTOS:
        img = sample_photos.load_photo(name)
        assert img.mode == "RGB" and min(img.size) >= 200, name


def test_edits_do_what_they_say():
    original = sample_photos.load_photo("coffee")  # 600 x 400
    pixels = np.asarray(original)
    np.testing.assert_array_equal(np.asarray(sample_photos.flip(original)), pixels[:, ::-1])
    assert sample_photos.crop(original).size == (420, 280)
    assert sample_photos.small(original).size == (210, 140)
    jpeg = np.asarray(sample_photos.recompress(original), dtype=np.int16)
    assert jpeg.shape == pixels.shape and 1 < np.abs(jpeg - pixels).mean() < 20
    assert sample_photos.rotate(original).size == (480, 320)
    assert np.asarray(sample_photos.tone(original)).mean() > pixels.mean()
    query = sample_photos.query_edit(original)
    assert query.size == (450, 300)
    for edit in sample_photos.EDITS.values():
        assert np.asarray(edit(original)).shape != pixels.shape or not np.array_equal(edit(original), pixels)


def test_write_collection(tmp_path):
    names = sample_photos.write_collection(tmp_path / "photos", photos=["coffee", "rocket"],
                                           edits=["crop", "flip"], show_progress=False)
    assert names == sorted(["coffee.jpg", "coffee__crop.jpg", "coffee__flip.jpg",
                            "rocket.jpg", "rocket__crop.jpg", "rocket__flip.jpg"])
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == names  # no temporary files left
    for name in names:
        with Image.open(tmp_path / "photos" / name) as img:
            assert img.format == "JPEG"
    assert [sample_photos.group_of(n) for n in names] == ["coffee"] * 3 + ["rocket"] * 3
    with pytest.raises(ValueError, match="unknown edit 'blur'"):
        sample_photos.write_collection(tmp_path / "x", edits=["blur"], show_progress=False)
    with pytest.raises(ValueError, match="unknown photo 'lena'"):
        sample_photos.load_photo("lena")


# --- results page and contact sheet ----------------------------------------------------------


def _photo(path, colour, size=(64, 48)):
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path


@pytest.fixture
def shown(tmp_path):
    query = _photo(tmp_path / "query.jpg", (0, 0, 255))
    results = [
        ShownResult(1, "blue <1>.jpg", _photo(tmp_path / "b1.jpg", (0, 0, 250)), 0.98, True),
        ShownResult(2, "red.jpg", _photo(tmp_path / "r.jpg", (255, 0, 0)), 0.41, False),
        ShownResult(3, "gone.jpg", tmp_path / "missing.jpg", 0.12, False),
    ]
    return query, results


def test_results_page_embeds_every_thumbnail(tmp_path, shown):
    query, results = shown
    page = write_results_html(tmp_path / "out" / "results.html", query, results, title="T & T",
                              notes=["a note"]).read_text()
    uris = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)
    assert len(uris) == 4  # query + 3 results, the missing file as a placeholder
    colours = [Image.open(io.BytesIO(base64.b64decode(u))).convert("RGB").getpixel((5, 5)) for u in uris]
    assert colours[0][2] > 200 and colours[2][0] > 200  # the query is blue, result 2 red
    assert "blue &lt;1&gt;.jpg" in page and "<1>" not in page
    assert page.count('class="marked"') == 1
    assert "0.980" in page and "0.410" in page and "T &amp; T" in page and "a note" in page


def test_contact_sheet_frames_marked_results(tmp_path, shown):
    query, results = shown
    path = write_contact_sheet(tmp_path / "sheet.png", query, results, columns=3, title="demo")
    with Image.open(path) as sheet:
        assert sheet.format == "PNG"
        pixels = np.asarray(sheet.convert("RGB"))
    green = np.all(pixels == (34, 139, 34), axis=-1)
    assert green.sum() > 500  # one framed cell
    sheet2 = np.asarray(contact_sheet(query, [r._replace(marked=False) for r in results], columns=3))
    assert not np.all(sheet2 == (34, 139, 34), axis=-1).any()
