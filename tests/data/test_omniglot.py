"""Omniglot from the shared official zips (decoded once per session into a tmp cache) and the downloader."""
import hashlib
import http.server
import os
import shutil
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from fewjax.data import omniglot
from fewjax.data import download as download_mod
from fewjax.data.download import DownloadError
from fewjax.data.omniglot import fetch


@pytest.fixture
def cache_env(session_cache, monkeypatch):
    monkeypatch.setenv("FEWJAX_CACHE_DIR", str(session_cache))
    return session_cache


@pytest.mark.slow  # decodes all 32,460 PNGs once (~5-10 s)
def test_splits_class_counts_values_and_cache(omniglot_dir, cache_env):
    shared_before = sorted(os.listdir(omniglot_dir))
    expected = {"train": 4112, "val": 688, "test": 1692, "trainval": 4800, "background": 964, "evaluation": 659,
                "background_rotations": 3856}
    sources = {s: omniglot(s, data_dir=omniglot_dir, download=False) for s in expected}
    for split, n in expected.items():
        src = sources[split]
        assert src.num_classes == n, split
        assert np.all(src.counts == 20) and src.example_shape == (28, 28, 1) and src.dtype == np.uint8
    assert sorted(os.listdir(omniglot_dir)) == shared_before  # never writes into a read-only data dir
    assert len(list(cache_env.glob("*.npz"))) == 2

    train = sources["train"]
    assert train.class_names[:2] == ("Angelic/character01/rot000", "Angelic/character01/rot090")
    x0, x90 = train.class_examples(0), train.class_examples(1)
    np.testing.assert_array_equal(np.rot90(x0, 1, axes=(1, 2)), x90)
    # strokes = 255 on a 0 background, antialiased (intermediate grey levels exist)
    assert x0.max() == 255 and np.median(x0) == 0 and x0[:, 0, :].mean() < 20
    assert np.mean((x0 > 0) & (x0 < 255)) > 0.02
    val, test = set(sources["val"].class_names), set(sources["test"].class_names)
    assert not (val & test) and not (set(train.class_names) & test)

    start = time.perf_counter()
    again = omniglot("test", data_dir=omniglot_dir, download=False)
    assert time.perf_counter() - start < 3.0  # from the .npz cache
    np.testing.assert_array_equal(again.class_examples(5), sources["test"].class_examples(5))


def test_bad_split_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="unknown Omniglot split 'training'"):
        omniglot("training", data_dir=tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        omniglot("train", data_dir=tmp_path, image_size=0)
    with pytest.raises(FileNotFoundError, match=f"put them in {tmp_path}"):
        omniglot("val", data_dir=tmp_path, download=False)


def test_data_dir_from_env_and_subfolder(omniglot_dir, tmp_path, monkeypatch):
    (tmp_path / "omniglot").symlink_to(omniglot_dir)
    monkeypatch.setenv("FEWJAX_DATA_DIR", str(tmp_path))
    assert fetch("images_evaluation.zip", download=False) == tmp_path / "omniglot" / "images_evaluation.zip"


def test_corrupt_local_zip_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWJAX_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "images_evaluation.zip").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="delete it"):
        omniglot("evaluation", data_dir=tmp_path, download=False)


# ----------------------------------------------------------------- downloader
class _ShortReadHandler(http.server.SimpleHTTPRequestHandler):
    """Announces the full length of a file but closes the connection halfway."""

    def do_GET(self):
        data = Path(self.directory, self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(directory, handler=_QuietHandler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture
def server_dir(omniglot_dir, tmp_path):
    d = tmp_path / "www"
    d.mkdir()
    shutil.copy(omniglot_dir / "images_evaluation.zip", d)
    return d


def _leftovers(directory):
    return sorted(p.name for p in Path(directory).iterdir()) if Path(directory).exists() else []


def test_download_verifies_and_writes(server_dir, tmp_path, monkeypatch):
    server, url = _serve(server_dir)
    try:
        monkeypatch.setenv("FEWJAX_OMNIGLOT_URL", url)
        data = tmp_path / "data"
        path = fetch("images_evaluation.zip", data_dir=data, progress=False)
        assert path == data / "images_evaluation.zip"
        assert hashlib.sha256(path.read_bytes()).hexdigest().startswith("a623286fa404")
        assert _leftovers(data) == ["images_evaluation.zip"]
        assert fetch("images_evaluation.zip", data_dir=data, base_url="http://127.0.0.1:9/") == path  # no refetch
    finally:
        server.shutdown()


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_bad_download_leaves_nothing(server_dir, tmp_path, damage):
    zip_path = server_dir / "images_evaluation.zip"
    data = bytearray(zip_path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 3]
    else:
        data[len(data) // 2] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    server, url = _serve(server_dir)
    try:
        with pytest.raises(DownloadError, match="corrupt") as info:
            fetch("images_evaluation.zip", data_dir=tmp_path / "data", base_url=url, progress=False)
        assert "put them in" in str(info.value)
        assert _leftovers(tmp_path / "data") == []
    finally:
        server.shutdown()


def test_connection_cut_short_leaves_nothing(server_dir, tmp_path):
    server, url = _serve(server_dir, _ShortReadHandler)
    try:
        with pytest.raises(DownloadError, match="cut short|truncated"):
            fetch("images_evaluation.zip", data_dir=tmp_path / "data", base_url=url, progress=False)
        assert _leftovers(tmp_path / "data") == []
    finally:
        server.shutdown()


def test_ctrl_c_during_download_leaves_nothing(server_dir, tmp_path, monkeypatch):
    class InterruptingBar:
        def update(self, n):
            raise KeyboardInterrupt

        def close(self):
            pass

    monkeypatch.setattr(download_mod, "_progress_bar", lambda *a: InterruptingBar())
    server, url = _serve(server_dir)
    try:
        with pytest.raises(KeyboardInterrupt):
            fetch("images_evaluation.zip", data_dir=tmp_path / "data", base_url=url)
        assert _leftovers(tmp_path / "data") == []
    finally:
        server.shutdown()


def test_offline_error_says_where_to_put_files(tmp_path):
    server, url = _serve(tmp_path)
    server.shutdown()
    server.server_close()  # nothing listens on that port any more
    with pytest.raises(DownloadError, match=r"could not download .*put them in") as info:
        omniglot("val", data_dir=tmp_path / "data", base_url=url, progress=False)
    assert str(tmp_path / "data") in str(info.value)
    assert _leftovers(tmp_path / "data") == []
