"""Verified, atomic file downloads and cache-directory helpers.

`download(url, dest, checksums=...)` streams `url` to a temporary file beside
`dest` with a tqdm progress bar, checks its size and checksum, then moves it
into place with `os.replace`: `dest` is either complete and verified or absent,
also after a failure or Ctrl-C.

Example:
    >>> from fewjax.data.download import user_cache_dir
    >>> user_cache_dir().name
    'fewjax'
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable

CHUNK = 1 << 16


def user_cache_dir() -> Path:
    """`$FEWJAX_CACHE_DIR`, else `$XDG_CACHE_HOME/fewjax`, else `~/.cache/fewjax`."""
    if os.environ.get("FEWJAX_CACHE_DIR"):
        return Path(os.environ["FEWJAX_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fewjax"


def file_digests(path: Path) -> dict[str, str]:
    """`{"md5": ..., "sha256": ...}` hex digests of a file."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            md5.update(chunk)
            sha.update(chunk)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def matches(digests: dict[str, str], checksums: Iterable[tuple[str, str]]) -> bool:
    """Whether any `(algorithm, hexdigest)` pair in `checksums` matches `digests`."""
    return any(digests.get(algo) == value.lower() for algo, value in checksums)


class DownloadError(OSError):
    """A download failed (network, truncated or corrupt); nothing was left at the destination."""


def download(url: str, dest: Path, *, checksums: Iterable[tuple[str, str]] = (), progress: bool = True,
             timeout: float = 60.0, help: str = "") -> Path:
    """Downloads `url` to `dest` atomically; verifies against any of `checksums` when given.

    Raises `DownloadError` (an OSError) mentioning `help` when the network is
    unreachable, the transfer is cut short, or no checksum matches.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    checksums = list(checksums)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, OSError) as error:
                raise DownloadError(f"could not download {url}: {getattr(error, 'reason', error)}. {help}") from error
            with response:
                total = response.headers.get("Content-Length")
                total = int(total) if total is not None else None
                written = 0
                bar = _progress_bar(total, dest.name, progress)
                try:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        out.write(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
                except (http.client.IncompleteRead, OSError) as error:
                    raise DownloadError(f"download of {url} was cut short after {written} bytes ({error}). {help}") \
                        from error
                finally:
                    bar.close()
        if total is not None and written != total:
            raise DownloadError(f"download of {url} is truncated: got {written} of {total} bytes. {help}")
        if checksums:
            digests = file_digests(tmp)
            if not matches(digests, checksums):
                raise DownloadError(
                    f"download of {url} is corrupt: sha256 {digests['sha256']} / md5 {digests['md5']} match none "
                    f"of the expected checksums {checksums}. {help}"
                )
        _umask_mode(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _umask_mode(path: Path) -> None:
    """Gives a mkstemp file (0600) the usual permissions of a new file (0666 minus the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _progress_bar(total, name, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, disable=not enabled,
                leave=False)
