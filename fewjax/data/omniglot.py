"""Omniglot (Lake et al. 2015) from the official zips, Vinyals split by default.

`omniglot(split)` returns an `ArraySource` of uint8 images `[N, S, S, 1]`
(S = `image_size`, 28 by default: 105 -> S with an antialiased Lanczos
resize), inverted so that strokes are 255 and background 0. The episode
sampler turns them into float32 in [0, 1] (NHWC, strokes = 1).

Splits:
  - "train" (4112 classes), "val" (688), "test" (1692), "trainval" (4800): the
    Vinyals et al. (2016) character split as used by Snell et al. (2017); each
    class is one character at one rotation (0/90/180/270 degrees), so every
    character gives four classes. Needs both zips.
  - "background" (964 classes), "evaluation" (659): Lake's original split,
    no rotations; "background_rotations" (3856): the background characters at
    four rotations, each a class, as the Vinyals split makes them (training
    classes for Lake's protocol that take nothing from the evaluation set).

Files: `images_background.zip` and `images_evaluation.zip` are looked up in
`data_dir` (argument), else `$FEWJAX_DATA_DIR`, else the user cache
(`~/.cache/fewjax`), each directly or in an `omniglot/` subfolder. Missing
zips are downloaded (when `download=True`) from the official repository
(`$FEWJAX_OMNIGLOT_URL` or `base_url` overrides the address), verified
against the official md5 or the sha256 of the repacked zips, and written
atomically. Decoded images are cached as .npz in that directory, or when it is
read-only in `$FEWJAX_CACHE_DIR` / `~/.cache/fewjax`, so a second load takes
about a second.

Example:
    >>> import os
    >>> from fewjax.data import omniglot, episodes
    >>> src = omniglot("val", data_dir=os.environ.get("FEWJAX_OMNIGLOT_DIR", "../shared/data/omniglot"),
    ...                download=False)  # doctest: +SKIP
    >>> src.num_classes, src.example_shape  # doctest: +SKIP
    (688, (28, 28, 1))
"""
from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from fewjax.data.download import download as _download
from fewjax.data.download import _umask_mode, file_digests, matches, user_cache_dir
from fewjax.data.sources import ArraySource

DEFAULT_BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
ZIPS = ("images_background.zip", "images_evaluation.zip")
# Official downloads (md5, from brendenlake/omniglot) and the repacked zips with identical PNGs (sha256).
CHECKSUMS = {
    "images_background.zip": (
        ("md5", "68d2efa1b9178cc56df9314c21c6e718"),
        ("sha256", "a5fc79093341e8d800b1146ef11a64ff070ee16367f6c432810de6b9ba5341b3"),
    ),
    "images_evaluation.zip": (
        ("md5", "6b91aef0f799c5bb55b94e3f2daec811"),
        ("sha256", "a623286fa404ff48b7ae17a512cb5452423a971c5d2b095bf2d89eab8e5740c8"),
    ),
}
VINYALS_SPLITS = ("train", "val", "test", "trainval")
LAKE_SPLITS = {"background": "images_background.zip", "evaluation": "images_evaluation.zip",
               "background_rotations": "images_background.zip"}
ROTATIONS = (0, 90, 180, 270)
DRAWERS = 20
_CACHE_VERSION = 1
SPLIT_DIR = Path(__file__).parent / "splits" / "vinyals"


def _where_to_put(directory: Path) -> str:
    return (
        f"Download {' and '.join(ZIPS)} from {DEFAULT_BASE_URL} (or https://github.com/brendenlake/omniglot) and put "
        f"them in {directory}, or pass data_dir=... / set FEWJAX_DATA_DIR to the folder that holds them."
    )


def _data_dir(data_dir) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get("FEWJAX_DATA_DIR"):
        return Path(os.environ["FEWJAX_DATA_DIR"]).expanduser()
    return user_cache_dir() / "omniglot"


def _find_zip(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / "omniglot" / name):
        if candidate.is_file():
            return candidate
    return None


def fetch(name: str, *, data_dir=None, download: bool = True, base_url: str | None = None,
          progress: bool = True) -> Path:
    """Path of the zip `name` ("images_background.zip" or "images_evaluation.zip"), downloading it if needed."""
    if name not in ZIPS:
        raise ValueError(f"unknown Omniglot file {name!r}; expected one of {ZIPS}.")
    directory = _data_dir(data_dir)
    found = _find_zip(directory, name)
    if found is not None:
        return found
    if not download:
        raise FileNotFoundError(f"{name} not found in {directory} (download=False). {_where_to_put(directory)}")
    base = base_url or os.environ.get("FEWJAX_OMNIGLOT_URL") or DEFAULT_BASE_URL
    url = base.rstrip("/") + "/" + name
    return _download(url, directory / name, checksums=CHECKSUMS[name], progress=progress,
                     help=_where_to_put(directory))


def _decode_zip(path: Path, image_size: int) -> tuple[np.ndarray, list[str]]:
    """All characters of one zip: uint8 `[num_chars, 20, S, S]` (ink = 255) and names "Alphabet/characterNN"."""
    from PIL import Image

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path} is not a readable zip ({error}); delete it and load again to re-download.") \
            from error
    by_char: dict[str, list[str]] = {}
    with archive:
        for member in archive.namelist():
            parts = member.split("/")
            if member.endswith(".png") and len(parts) >= 3:
                by_char.setdefault("/".join(parts[-3:-1]), []).append(member)
        if not by_char:
            raise ValueError(f"{path} holds no Omniglot PNGs (<Alphabet>/<characterNN>/<id>_<drawer>.png).")
        names = sorted(by_char)
        images = np.zeros((len(names), DRAWERS, image_size, image_size), np.uint8)
        for i, name in enumerate(names):
            members = sorted(by_char[name])
            if len(members) != DRAWERS:
                raise ValueError(f"{path}: character {name} has {len(members)} images, expected {DRAWERS}; "
                                 "the zip is damaged, delete it and load again.")
            for j, member in enumerate(members):
                try:
                    with Image.open(io.BytesIO(archive.read(member))) as im:
                        small = im.convert("L").resize((image_size, image_size), Image.Resampling.LANCZOS)
                except Exception as error:  # zlib/PIL errors: report the damaged member
                    raise ValueError(f"{path}: cannot decode {member} ({error}); the zip is damaged, delete it "
                                     "and load again.") from error
                images[i, j] = 255 - np.asarray(small, np.uint8)
    return images, names


def _write_npz(path: Path, **arrays) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        _umask_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _writable(directory: Path) -> bool:
    """Writable by us AND not marked read-only by its mode bits (root may write anywhere; we do not)."""
    return os.access(directory, os.W_OK) and bool(directory.stat().st_mode & 0o200)


def _load_zip(path: Path, image_size: int) -> tuple[np.ndarray, list[str]]:
    """Decoded zip, from the .npz cache when present (beside the zip, else in the user cache)."""
    digests = file_digests(path)
    stem = path.name.removesuffix(".zip")
    cache_name = f"{stem}-{image_size}px-v{_CACHE_VERSION}-{digests['sha256'][:16]}.npz"
    override = os.environ.get("FEWJAX_CACHE_DIR")
    candidates = [Path(override).expanduser()] if override else [path.parent, user_cache_dir() / "omniglot"]
    for directory in candidates:
        cached = directory / cache_name
        if cached.is_file():
            try:
                with np.load(cached) as f:
                    return f["images"], [str(n) for n in f["names"]]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                pass  # a damaged cache is rebuilt below
    if not matches(digests, CHECKSUMS[path.name]):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError) as error:
            raise ValueError(f"{path} is not a readable zip ({error}); delete it and load again to re-download.") \
                from error
        if bad is not None:
            raise ValueError(f"{path} is corrupt (bad CRC in {bad}); delete it and load again to re-download.")
    images, names = _decode_zip(path, image_size)
    for directory in candidates:
        if directory.is_dir() and not _writable(directory):
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _write_npz(directory / cache_name, images=images, names=np.array(names))
            break
        except OSError:  # read-only data directory: try the next one
            continue
    return images, names


def _read_split(split: str) -> list[str]:
    lines = (SPLIT_DIR / f"{split}.txt").read_text().split()
    return [line.strip() for line in lines if line.strip()]


def omniglot(split: str = "train", *, data_dir=None, download: bool = True, image_size: int = 28,
             base_url: str | None = None, progress: bool = True) -> ArraySource:
    """The Omniglot `split` as an `ArraySource` of uint8 `[N, image_size, image_size, 1]` (ink = 255).

    Args:
      split: "train", "val", "test", "trainval" (Vinyals, rotations as classes)
        or "background", "evaluation" (Lake, no rotations), "background_rotations"
        (Lake's background characters, rotations as classes).
      data_dir: folder with (or to receive) the two zips; default
        `$FEWJAX_DATA_DIR`, else `~/.cache/fewjax/omniglot`.
      download: fetch missing zips from the official repository.
      image_size: side of the resized images (105 keeps the originals).
      base_url: where to download from (default the official GitHub; also
        `$FEWJAX_OMNIGLOT_URL`).
      progress: show a progress bar while downloading.

    Raises:
      ValueError: unknown split or bad image_size, damaged zip.
      FileNotFoundError: zips missing and download=False.
      fewjax.data.download.DownloadError (an OSError): offline, truncated or
        corrupt download; says where to put the files by hand.
    """
    if split not in VINYALS_SPLITS and split not in LAKE_SPLITS:
        raise ValueError(f"unknown Omniglot split {split!r}; expected one of "
                         f"{VINYALS_SPLITS + tuple(LAKE_SPLITS)}.")
    if not isinstance(image_size, int) or not 1 <= image_size <= 105:
        raise ValueError(f"image_size must be an int in 1..105; got {image_size!r}.")
    needed = (LAKE_SPLITS[split],) if split in LAKE_SPLITS else ZIPS
    paths = [fetch(name, data_dir=data_dir, download=download, base_url=base_url, progress=progress)
             for name in needed]
    decoded = [_load_zip(p, image_size) for p in paths]
    if split in LAKE_SPLITS:
        images, names = decoded[0]
        if split == "background_rotations":  # class order: each character's four rotations, as in the Vinyals files
            images = np.stack([np.rot90(images, r // 90, axes=(2, 3)) for r in ROTATIONS], axis=1)
            images = images.reshape(-1, *images.shape[2:])
            names = [f"{name}/rot{r:03d}" for name in names for r in ROTATIONS]
        labels = np.repeat(np.arange(len(names), dtype=np.int32), DRAWERS)
        return ArraySource(images.reshape(-1, image_size, image_size, 1), labels, names)

    index = {}
    for z, (_, names) in enumerate(decoded):
        for i, name in enumerate(names):
            index[name] = (z, i)
    classes = _read_split(split)
    xs = np.empty((len(classes), DRAWERS, image_size, image_size), np.uint8)
    for c, entry in enumerate(classes):
        character, _, rotation = entry.rpartition("/")
        if character not in index or not rotation.startswith("rot"):
            raise ValueError(f"split {split!r} names class {entry!r}, which is not in {[str(p) for p in paths]}; "
                             "the zips or the split file are not the official ones.")
        z, i = index[character]
        xs[c] = np.rot90(decoded[z][0][i], int(rotation[3:]) // 90, axes=(1, 2))
    labels = np.repeat(np.arange(len(classes), dtype=np.int32), DRAWERS)
    return ArraySource(xs.reshape(-1, image_size, image_size, 1), labels, classes)
