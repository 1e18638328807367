"""The notebook apps' tests share one small real database (built once per session)."""

import pytest
from _widget_db import database_files


@pytest.fixture(scope="session")
def db_files(tmp_path_factory):
    return database_files(tmp_path_factory)


@pytest.fixture(scope="module")
def db(db_files):
    from similar_images.search import SimilarImages

    return SimilarImages.open(vectors=db_files["vectors"], index=db_files["index"])
