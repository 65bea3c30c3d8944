from pathlib import Path

import pytest

from tests.shared import SHARED


def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def omniglot_dir() -> Path:
    d = shared_dir() / "data" / "omniglot"
    if not (d / "images_background.zip").is_file():
        pytest.skip(f"Omniglot zips not found in {d} (set FEWJAX_SHARED)")
    return d


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """A per-session decode cache so tests never touch ~/.cache."""
    return tmp_path_factory.mktemp("fewjax_cache")
