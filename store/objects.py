"""The artifact store: where weights, checkpoints, ensemble weights, validation predictions and uploaded
datasets are kept, by key (`jobs/<job_id>/member-0.safetensors`), so that every API and worker host sees
the same files.

Two kinds, one interface: LocalStore, a folder (the embedded default: one host, or hosts sharing a
volume), and S3Store, an S3-compatible object store (AWS S3, MinIO, ...) for hosts that share no disk.
Guarantees, both kinds: an object is seen whole or not at all (local: written aside, then os.replace;
S3: a PUT, or a multipart upload, becomes visible only once complete); a missing key is FileNotFoundError.

Rows written before keys were stored hold absolute local paths: `at` still reads those, as local files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from store.settings import Settings

CHUNK = 2**20  # bytes per piece of a streamed download


class ArtifactStore(ABC):
    @abstractmethod
    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        """A local path to write the object to; published under `key` whole when the block ends, and not
        at all if it raises."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def read_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes from `start` (fewer at the end): a header without the body."""

    @abstractmethod
    def stream(self, key: str, chunk: int = CHUNK) -> Iterator[bytes]:
        """The object in pieces, for a download that never holds it whole; FileNotFoundError at once."""

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Gone, or was never there: both fine."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Every object whose key starts with `prefix` (a folder: end it with /)."""

    @abstractmethod
    def download(self, key: str, dest: Path) -> None:
        """A local copy at `dest`, which appears whole."""

    def local_path(self, key: str) -> Path | None:
        """The object as a local file where it is one (safetensors then maps it rather than reading it)."""
        return None

    def connect(self) -> None:
        """Make ready now what the first read or write would: an S3 client loads for a second or more,
        which inside a training attempt would come out of its lease. A folder needs nothing."""
        return None

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except FileNotFoundError:
            return False
        return True

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writing(key) as path:
            path.write_bytes(data)

    def at(self, stored: str | Path) -> Artifact:
        """The artifact a row names: a key in this store, or (rows from before keys) an absolute path."""
        if Path(stored).is_absolute():
            return Artifact.file(Path(stored))
        return Artifact(self, str(stored))


@dataclass(frozen=True)
class Artifact:
    """One object: a store and its key. What rows name, and what store/artifacts.py reads and writes."""

    store: ArtifactStore
    key: str

    @classmethod
    def file(cls, path: Path) -> Artifact:
        """A file on this host's disk, outside any configured store (a download, a test's file)."""
        path = Path(path).absolute()
        return cls(LocalStore(path.parent), path.name)

    def sibling(self, name: str) -> Artifact:
        """Another object in the same folder: a run's validation predictions beside its weights."""
        return Artifact(self.store, str(PurePosixPath(self.key).with_name(name)))

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name

    def exists(self) -> bool:
        return self.store.exists(self.key)

    def delete(self) -> None:
        self.store.delete(self.key)


def _staged(dest: Path) -> Path:
    # Beside the destination (one filesystem, so os.replace is atomic), named so no two writers meet.
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")


class LocalStore(ArtifactStore):
    """A folder; keys are paths below it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStore) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if PurePosixPath(key).is_absolute() or ".." in parts:
            raise ValueError(f"not a key: {key!r}")
        return self.root.joinpath(*parts)

    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = _staged(dest)
        try:
            yield partial
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        with open(self.path(key), "rb") as file:
            file.seek(start)
            return file.read(length)

    def stream(self, key: str, chunk: int = CHUNK) -> Iterator[bytes]:
        file = open(self.path(key), "rb")  # opened here, so a missing file raises before the first piece

        def pieces() -> Iterator[bytes]:
            with file:
                while piece := file.read(chunk):
                    yield piece

        return pieces()

    def size(self, key: str) -> int:
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(path)
        return path.stat().st_size

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        folder = self.path(prefix.rstrip("/"))
        if prefix.endswith("/") and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            return
        for path in folder.parent.glob(f"{folder.name}*"):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    def download(self, key: str, dest: Path) -> None:
        source = self.path(key)
        if not source.is_file():
            raise FileNotFoundError(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = _staged(dest)
        try:
            try:
                os.link(source, partial)  # same filesystem: no second copy on disk
            except OSError:
                shutil.copyfile(source, partial)
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        return self.path(key)


class S3Store(ArtifactStore):
    """A bucket (and a key prefix in it) of an S3-compatible store, through boto3.

    Credentials come as boto3 finds them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile, an
    instance role); `endpoint_url` names a store other than AWS's (MinIO, moto). A boto3 client is made per
    process: a worker forks its training processes, and a client's connections must not cross a fork.
    """

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self._clients: dict[int, object] = {}
        self._lock = threading.Lock()

    @property
    def client(self):
        pid = os.getpid()
        with self._lock:
            if pid not in self._clients:
                import boto3  # only where an S3 store is configured

                self._clients = {pid: boto3.client("s3", endpoint_url=self.endpoint_url)}
            return self._clients[pid]

    def connect(self) -> None:
        self.client  # noqa: B018 (made and kept for this process)

    def _key(self, key: str) -> str:
        return self.prefix + key

    @contextmanager
    def _missing_as_file_not_found(self, key: str) -> Iterator[None]:
        from botocore.exceptions import ClientError

        try:
            yield
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"s3://{self.bucket}/{self._key(key)}") from None
            raise

    @contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="trainyard-upload-") as folder:
            path = Path(folder) / PurePosixPath(key).name
            yield path
            # upload_file sends large files in parts; the object exists only once the last has arrived.
            self.client.upload_file(str(path), self.bucket, self._key(key))

    def read_bytes(self, key: str) -> bytes:
        with self._missing_as_file_not_found(key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        span = f"bytes={start}-{start + length - 1}"
        with self._missing_as_file_not_found(key):
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=span)
            return answer["Body"].read()

    def stream(self, key: str, chunk: int = CHUNK) -> Iterator[bytes]:
        with self._missing_as_file_not_found(key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]

        def pieces() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk)
            finally:
                body.close()

        return pieces()

    def size(self, key: str) -> int:
        with self._missing_as_file_not_found(key):
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:  # at most 1000 a page, which is what one delete_objects takes
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def download(self, key: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = _staged(dest)
        try:
            with self._missing_as_file_not_found(key):
                self.client.download_file(self.bucket, self._key(key), str(partial))
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)


def artifact_store(settings: Settings) -> ArtifactStore:
    """The store the settings name: artifacts_url s3://bucket/prefix, or the home's artifacts folder."""
    return _store(settings.artifacts_url, settings.s3_endpoint_url, settings.artifacts_dir)


@lru_cache(maxsize=8)  # one per configuration: S3Store keeps its clients, and apps in tests differ
def _store(url: str | None, endpoint_url: str | None, artifacts_dir: Path) -> ArtifactStore:
    if url is None:
        return LocalStore(artifacts_dir)
    parts = urlsplit(url)
    if parts.scheme == "s3" and parts.netloc:
        return S3Store(parts.netloc, parts.path, endpoint_url)
    if parts.scheme == "file" or not parts.scheme:
        return LocalStore(Path(parts.path).resolve())
    raise ValueError(f"TRAINYARD_ARTIFACTS_URL must be s3://bucket[/prefix] or a folder, got {url!r}")
