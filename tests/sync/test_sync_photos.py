"""The issue's scenario on real photos (shipped with scikit-image, scikit-learn and matplotlib)
with the default model, EfficientNet-Lite0 (offline weights): add 5, delete 3, modify 2,
rename 2, then sync. The catalog equals the folder, the modified photos find themselves
first with score >= 0.9999, and the model ran on the new and changed photos only."""

from __future__ import annotations

import pytest
from _sync_data import catalog_hashes, folder_hashes

from similar_images.demo.sample_photos import EDITS, PHOTOS, load_photo, save_jpeg
from similar_images.search import SimilarImages
from similar_images.sync import default_vectors, sync_folder

pytestmark = pytest.mark.slow


def write_photo(folder, name: str, photo: str, edit: str | None = None) -> None:
    image = load_photo(photo)
    image.thumbnail((480, 480))
    save_jpeg(EDITS[edit](image) if edit else image, folder / name)


def counting(extractor):
    """``extractor`` with ``images``: how many images its ``embed`` was given."""
    real = extractor.embed
    extractor.images = 0

    def embed(batch):
        extractor.images += len(batch)
        return real(batch)

    extractor.embed = embed
    return extractor


def test_add_5_delete_3_modify_2_rename_2_on_real_photos(tmp_path):
    from similar_images.features import get_extractor

    names = list(PHOTOS)
    first, later = names[:12], names[12:17]
    folder = tmp_path / "my_photos"
    folder.mkdir()
    for photo in first:
        write_photo(folder, f"{photo}.jpg", photo)
    model = counting(get_extractor("efficientnet-lite0", device="cpu"))
    created = sync_folder(folder, extractor=model, show_progress=False)
    assert created.created and created.applied.added == 12 and model.images == 12
    vectors = default_vectors(folder)
    assert SimilarImages.open(vectors).model["name"] == "efficientnet-lite0"

    for photo in later:  # add 5
        write_photo(folder, f"{photo}.jpg", photo)
    for photo in first[:3]:  # delete 3
        (folder / f"{photo}.jpg").unlink()
    modified = [f"{photo}.jpg" for photo in first[3:5]]
    for name, photo in zip(modified, first[3:5]):  # modify 2: a tone edit saved over the photo
        write_photo(folder, name, photo, "tone")
    (folder / f"{first[5]}.jpg").rename(folder / "renamed-1.jpg")  # rename 2
    (folder / "album").mkdir()
    (folder / f"{first[6]}.jpg").rename(folder / "album" / f"{first[6]}.jpg")

    model.images = 0
    report = sync_folder(folder, extractor=model, show_progress=False)
    assert "5 added, 3 removed, 2 changed, 2 renamed, 0 skipped, 5 unchanged; the model ran on 7 image(s)" \
        in report.summary()
    assert model.images == 7  # new and changed only: the renamed ones were not re-embedded
    assert catalog_hashes(vectors) == folder_hashes(folder)
    db = SimilarImages.open(vectors, extractor=model)
    assert len(db) == 14
    for name in modified:
        hit = db.search(str(folder / name), k=1)[0]
        assert hit.path == name and hit.score >= 0.9999
    hit = db.search(str(folder / "renamed-1.jpg"), k=1)[0]
    assert hit.path == "renamed-1.jpg" and hit.score >= 0.9999  # its kept vector is the photo's
