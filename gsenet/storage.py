"""gs:// datasets as local folders, and the filesystem Ray Train writes its results to.

`resolve_data_root("gs://bucket/prefix")` mirrors the prefix into a local cache and returns that
folder, so the rest of the code only ever reads local files. The cache is

    CACHE/gcs/blobs/<bucket>/<object>.g<generation>   one file per object generation (immutable)
    CACHE/gcs/views/<bucket>/<prefix>/...             hard links to the blobs, under the object names

- keyed by object generation: an overwritten object gets a new blob, the view is re-linked;
- verified: every download is checked against the listing's crc32c (or md5) before it is renamed
  to its final name, so a partial or corrupt download never appears there;
- resumable: a re-run lists the prefix again and downloads only blobs that are not there yet;
- shared: one file lock per dataset view, so workers on a node wait for each other instead of
  downloading the same objects twice.

Credentials come only from the environment (Application Default Credentials). When
STORAGE_EMULATOR_HOST is set (tests, local emulators) the client is anonymous.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gsenet.errors import DataError, DiskFullError, StorageError

DOWNLOAD_THREADS = 8


def is_gcs(path: str | os.PathLike) -> bool:
    return str(path).startswith("gs://")


def cache_root(cache_dir: str | os.PathLike = "") -> Path:
    """The local cache: `cache_dir`, else $GSENET_CACHE_DIR, else ~/.cache/gsenet."""
    chosen = str(cache_dir) or os.environ.get("GSENET_CACHE_DIR", "") or "~/.cache/gsenet"
    return Path(chosen).expanduser().resolve()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (fcntl) shared by all processes on this node; released on exit or crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def parse_gcs_uri(uri: str) -> tuple[str, str]:
    """ "gs://bucket/a/b/" -> ("bucket", "a/b")."""
    if not is_gcs(uri):
        raise StorageError(f"{uri!r} is not a gs:// URI (expected gs://bucket/prefix)")
    bucket, _, prefix = uri[len("gs://") :].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} names no bucket (expected gs://bucket/prefix)")
    return bucket, prefix.strip("/")


def emulator_host() -> str:
    return os.environ.get("STORAGE_EMULATOR_HOST", "")


def gcs_client():
    """A google-cloud-storage client: anonymous against an emulator, else Application Default Credentials."""
    from google.cloud import storage

    if emulator_host():
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="gsenet-emulator", credentials=AnonymousCredentials())
    import google.auth.exceptions

    try:
        return storage.Client()
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise StorageError(
            f"no Google Cloud credentials found ({exc}); run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file (never commit it)"
        ) from None


def _where() -> str:
    return f"the emulator at {emulator_host()}" if emulator_host() else "storage.googleapis.com"


def _storage_error(exc: Exception, uri: str) -> StorageError:
    """Translate google/requests errors into one line naming the URI and what to do."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.NotFound):
        return StorageError(
            f"{uri}: not found ({exc.message}); check that the bucket exists and the name is spelled right "
            "(`gcloud storage ls gs://BUCKET`)"
        )
    if isinstance(exc, (gexc.Forbidden, gexc.Unauthorized)):
        return StorageError(
            f"{uri}: access denied ({exc.message}); the credentials in use (Application Default Credentials) "
            "need roles/storage.objectViewer on the bucket, or run `gcloud auth application-default login`"
        )
    if type(exc).__name__ == "RefreshError":  # google.auth: the token endpoint said no
        return StorageError(
            f"{uri}: credentials were rejected ({exc}); refresh them with `gcloud auth application-default login` "
            "or point GOOGLE_APPLICATION_CREDENTIALS at a valid key"
        )
    return StorageError(
        f"{uri}: cannot reach {_where()} ({type(exc).__name__}: {str(exc)[:200]}); "
        "check the network, or STORAGE_EMULATOR_HOST if you use an emulator"
    )


def _retry(timeout: float):
    """The library's retry policy (transient errors, backoff), but giving up after `timeout` seconds."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(timeout)


# ----------------------------------------------------------------------------------------------
# Download into the cache
# ----------------------------------------------------------------------------------------------
def _checksum_ok(path: Path, crc32c_b64: str | None, md5_b64: str | None) -> bool:
    """Compare a file with the listing's checksum (crc32c preferred); no checksum given -> trust the size."""
    if crc32c_b64:
        import google_crc32c

        return _b64_digest(path, google_crc32c.Checksum()) == crc32c_b64
    if md5_b64:
        return _b64_digest(path, hashlib.md5()) == md5_b64
    return True


def _b64_digest(path: Path, hasher) -> str:
    """Base64 digest of a file, read in 1 MiB chunks (GCS listings give checksums in base64)."""
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(chunk)
    return base64.b64encode(hasher.digest()).decode()


def _remove_stale_partials(dest: Path) -> None:
    """Delete partial downloads of `dest` left by processes that died (a live one may still be writing)."""
    for partial in dest.parent.glob(f".{dest.name}.partial-*"):
        try:
            os.kill(int(partial.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            partial.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, owned by someone else


def _download_blob(blob, dest: Path, uri: str, timeout: float) -> bool:
    """Download one object generation to `dest` (temp name, verify, rename). Returns True if it downloaded."""
    if dest.exists():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(dest)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    try:
        # The listed blob carries its generation, so we get exactly that version (not a newer one).
        blob.download_to_filename(str(partial), timeout=timeout, retry=_retry(timeout), checksum=None)
        if partial.stat().st_size != blob.size or not _checksum_ok(partial, blob.crc32c, blob.md5_hash):
            raise StorageError(
                f"gs://{blob.bucket.name}/{blob.name}: downloaded bytes do not match the listing's checksum; "
                "run the command again (only this object is fetched again)"
            )
        partial.replace(dest)
        return True
    except StorageError:
        raise
    except Exception as exc:
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc):
            raise DiskFullError(
                f"no space left on {dest.parent} (the local cache of gs:// data) while fetching "
                f"gs://{blob.bucket.name}/{blob.name}; free space there or set data.cache_dir to a bigger disk, "
                "then run the command again (what is complete stays cached)"
            ) from None
        raise _storage_error(exc, f"gs://{blob.bucket.name}/{blob.name}") from None
    finally:
        partial.unlink(missing_ok=True)


def _list_blobs(client, bucket: str, prefix: str, uri: str, timeout: float) -> list:
    try:
        listing = client.list_blobs(
            bucket, prefix=f"{prefix}/" if prefix else None, timeout=timeout, retry=_retry(timeout)
        )
        blobs = [b for b in listing if not b.name.endswith("/")]  # skip folder placeholders
    except Exception as exc:
        raise _storage_error(exc, uri) from None
    if not blobs:
        raise StorageError(f"{uri}: no objects under this prefix; check the path (expected {uri}/train/...)")
    return blobs


def _link(blob_path: Path, view_path: Path) -> None:
    """Point `view_path` at `blob_path` atomically (hard link; copy where links are impossible)."""
    if view_path.exists() and view_path.stat().st_ino == blob_path.stat().st_ino:
        return
    view_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = view_path.with_name(f".{view_path.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(blob_path, tmp)
    except OSError:
        shutil.copyfile(blob_path, tmp)
    tmp.replace(view_path)


@dataclass
class SyncResult:
    path: Path  # the local view of the prefix
    objects: int  # objects listed under the prefix
    downloaded: int  # objects this call fetched (the others were in the cache already)


def sync_gcs_prefix(uri: str, cache_dir: str | os.PathLike = "", *, timeout: float = 60.0) -> SyncResult:
    """Mirror gs://bucket/prefix into the cache (see the module docstring)."""
    bucket_name, prefix = parse_gcs_uri(uri)
    root = cache_root(cache_dir) / "gcs"
    view = root / "views" / bucket_name / prefix
    client = gcs_client()
    with file_lock(root / "locks" / (hashlib.sha1(f"{bucket_name}/{prefix}".encode()).hexdigest() + ".lock")):
        blobs = _list_blobs(client, bucket_name, prefix, uri, timeout)
        targets = {b.name: root / "blobs" / bucket_name / f"{b.name}.g{b.generation}" for b in blobs}
        missing = [b for b in blobs if not targets[b.name].exists()]
        with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS) as pool:
            downloaded = sum(pool.map(lambda b: _download_blob(b, targets[b.name], uri, timeout), missing))
        wanted = set()
        for name, blob_path in targets.items():
            relative = name[len(prefix) :].lstrip("/") if prefix else name
            wanted.add(relative)
            _link(blob_path, view / relative)
        for path in sorted(view.rglob("*"), reverse=True):  # objects deleted from the bucket leave the view
            relative = path.relative_to(view).as_posix()
            if path.is_file() and relative not in wanted:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    return SyncResult(path=view, objects=len(blobs), downloaded=downloaded)


def resolve_data_root(path: str | os.PathLike, cache_dir: str | os.PathLike = "", *, timeout: float = 60.0) -> Path:
    """A dataset root as a local folder: a local path as is, gs://bucket/prefix via the local cache."""
    if is_gcs(path):
        return sync_gcs_prefix(str(path), cache_dir, timeout=timeout).path
    local = Path(path).expanduser()
    if not str(path):
        raise DataError("no dataset path given: set data.path=/path/to/dataset (or gs://bucket/prefix)")
    if not local.is_dir():
        raise DataError(
            f"{local}: dataset folder does not exist; create it with `gsenet simulate {local}` or fix data.path"
        )
    return local


def upload_directory(local_dir: str | os.PathLike, uri: str, *, timeout: float = 60.0) -> int:
    """Upload every file under `local_dir` to gs://bucket/prefix/<relative path>; returns the object count."""
    bucket_name, prefix = parse_gcs_uri(uri)
    local_dir = Path(local_dir)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    bucket = gcs_client().bucket(bucket_name)

    def upload(path: Path) -> None:
        name = "/".join(x for x in (prefix, path.relative_to(local_dir).as_posix()) if x)
        try:
            bucket.blob(name).upload_from_filename(str(path), timeout=timeout, retry=_retry(timeout))
        except Exception as exc:
            raise _storage_error(exc, f"gs://{bucket_name}/{name}") from None

    with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS) as pool:
        list(pool.map(upload, files))
    return len(files)


# ----------------------------------------------------------------------------------------------
# Ray Train storage
# ----------------------------------------------------------------------------------------------
def open_storage_filesystem(uri: str):
    """(pyarrow.fs.FileSystem, path) for Ray Train's RunConfig(storage_path=path, storage_filesystem=fs).

    gs://bucket/prefix -> (GcsFileSystem, "bucket/prefix"), anonymous over http against
    STORAGE_EMULATOR_HOST when it is set; a local path -> (LocalFileSystem, absolute path).
    """
    import pyarrow.fs

    from gsenet.runtime import DEFAULT_STORAGE

    if not is_gcs(uri):
        path = Path(uri or DEFAULT_STORAGE).expanduser().resolve()
        return pyarrow.fs.LocalFileSystem(), str(path)
    bucket, prefix = parse_gcs_uri(uri)
    host = emulator_host()
    if host:
        scheme, _, endpoint = host.rpartition("://")
        fs = pyarrow.fs.GcsFileSystem(anonymous=True, endpoint_override=endpoint, scheme=scheme or "http")
    else:
        fs = pyarrow.fs.GcsFileSystem()  # Application Default Credentials
    return fs, "/".join(x for x in (bucket, prefix) if x)


# ----------------------------------------------------------------------------------------------
# Small text files (sweep state, timelines) at a local path or gs://bucket/object
# ----------------------------------------------------------------------------------------------
def exists_at(uri: str) -> bool:
    import pyarrow.fs

    fs, path = open_storage_filesystem(uri)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def read_text_at(uri: str) -> str:
    fs, path = open_storage_filesystem(uri)
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def write_text_at(uri: str, text: str) -> None:
    fs, path = open_storage_filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())
