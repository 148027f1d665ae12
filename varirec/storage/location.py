"""Where a dataset lives: a local directory or a URI on a ``pyarrow.fs`` / fsspec filesystem.

Contents:
    StorePath: a path on a non-local filesystem (``s3://bucket/prefix``), with the few
        pathlib-like operations the writer needs (``/``, ``name``, ``mkdir``, listing,
        whole-object reads and writes, exclusive creation).
    as_path: ``pathlib.Path`` for a local path, :class:`StorePath` for a URI.
    resolve_filesystem: the ``(filesystem, path)`` of a URI.
    redact: a URI without credentials, for messages and logs.

Object stores (S3, GCS, Azure) have no atomic rename, so crash safety comes from the
object model: an object becomes visible only once its upload completed. Parts are
therefore built in memory and written with one upload when they close (pyarrow's S3
stream completes its multipart upload only in ``close``; a process killed before
leaves no object). Run creation is exclusive with a conditional PUT
(``If-None-Match: *``) on S3 when boto3 is installed (``pip install 'varirec[s3]'``);
without boto3, or on another store, it checks then writes, which refuses an existing
run but not two creators racing within the same second. Other non-local filesystems
(HDFS, fsspec's) write a temporary name and move it.

Credentials and endpoint come from the standard environment variables
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` or
``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``), read by pyarrow and boto3 themselves; varirec
never writes them to ``run.json`` or logs, and strips any from URIs in messages.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow.fs as pafs

__all__ = ["StorePath", "as_path", "check_uri", "redact", "resolve_filesystem"]

logger = logging.getLogger(__name__)

_OBJECT_STORES = {"s3", "gcs", "abfs", "gs", "az", "abfss", "adl"}
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_uri(path: object) -> bool:
    """Whether ``path`` is a URI with a scheme (``s3://...``), not a local path.

    Example:
        >>> is_uri("s3://bucket/data"), is_uri("/tmp/data"), is_uri("file:///tmp/x")
        (True, False, False)
    """
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else ""
    return bool(_SCHEME_RE.match(text)) and not text.startswith("file://")


def redact(uri: str) -> str:
    """``uri`` without a user/password part or query string (where credentials go).

    Example:
        >>> redact("s3://KEY:SECRET@bucket/data?secret_key=S&region=eu")
        's3://bucket/data'
    """
    if not is_uri(uri):
        return uri
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


_BUCKET_RE = re.compile(r"^[A-Za-z0-9._-]+$")
"""Characters no S3 bucket goes without (older us-east-1 buckets and S3-compatible
stores take capitals and underscores too, so only the rest is refused)."""
_KEYED_HOSTS = {"s3", "gs", "gcs"}
"""Schemes whose ``user@`` can only be keys (Azure's ``container@account`` is not)."""
_ARROW_SCHEMES = {"s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss"}
"""Schemes that pyarrow resolves itself: its error is the one to show."""


def check_uri(uri: str) -> None:
    """Refuse an object-store URI that would go wrong later: keys in it (credentials
    come from the environment only), no bucket, an S3 bucket name S3 refuses, or an
    empty, ``.`` or ``..`` path component (stores keep them literally, so a run would
    be split between two prefixes).

    Example:
        >>> check_uri("s3://bucket/evals/run")
        >>> check_uri("s3://bucket/a/../b")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: s3://bucket/a/../b has a '..' path component, ...; write s3://bucket/b
    """
    parts = urlsplit(uri)
    if parts.scheme not in _OBJECT_STORES:
        return
    if "@" in parts.netloc and parts.scheme in _KEYED_HOSTS:
        raise ValueError(
            f"{redact(uri)} has keys in it: varirec reads credentials from the environment "
            "only (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...); set them there "
            f"and write {redact(uri)}"
        )
    bucket = parts.netloc.rsplit("@", 1)[-1] if parts.scheme not in _KEYED_HOSTS else parts.netloc
    if not bucket:
        raise ValueError(f"{redact(uri)} names no bucket; write {parts.scheme}://BUCKET/prefix")
    if parts.scheme == "s3" and not _BUCKET_RE.match(bucket):
        raise ValueError(
            f"{redact(uri)}: {bucket!r} is not an S3 bucket name (letters, digits, dots, "
            "hyphens and underscores only)"
        )
    path = parts.path.removeprefix("/").rstrip("/")
    steps = path.split("/") if path else []
    for step in steps:
        if step in ("", ".", ".."):
            clean = posixpath.normpath("/" + path).lstrip("/")  # "/..": nothing above
            fixed = f"{parts.scheme}://{parts.netloc}/{clean}".rstrip("/")
            what = "an empty" if step == "" else f"a {step!r}"
            raise ValueError(
                f"{redact(uri)} has {what} path component, which an object store keeps in "
                f"the name (no folder is skipped or climbed): a run's objects would land "
                f"under two prefixes; write {fixed}"
            )


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem of ``uri`` and the path on it: pyarrow's own, else fsspec's.

    Raises:
        ValueError: a URI :func:`check_uri` refuses, one that pyarrow refuses for a
            scheme it knows (its reason, e.g. an unknown query parameter), or a scheme
            that neither pyarrow nor an installed fsspec implementation knows (the
            message names it and what to install).
    """
    check_uri(uri)
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, TypeError) as exc:
        arrow_error = exc
    reason = str(arrow_error)
    if urlsplit(uri).scheme in _ARROW_SCHEMES and not (
        "Unrecognized" in reason or "support" in reason  # this pyarrow lacks the scheme
    ):
        raise ValueError(f"{redact(uri)}: {_scrubbed(reason, uri)}") from None
    try:
        import fsspec  # optional: any fsspec filesystem, wrapped for pyarrow
    except ImportError:
        fsspec = None
    if fsspec is not None:
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except (ImportError, ValueError) as exc:
            arrow_error = exc
        else:
            return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    raise ValueError(
        f"no filesystem for {redact(uri)} ({arrow_error}); use a local path, an s3:// URI, "
        "or install the fsspec implementation of that scheme"
    ) from None


def _scrubbed(message: str, uri: str) -> str:
    """``message`` without the query values of ``uri`` (where keys may be)."""
    for values in parse_qs(urlsplit(uri).query).values():
        for value in values:
            if value:
                message = message.replace(value, "***")
    return message


def _scheme(filesystem: pafs.FileSystem, uri: str) -> str:
    if filesystem.type_name == "py":
        return urlsplit(uri).scheme
    return filesystem.type_name


class StorePath:
    """A path on a non-local filesystem, e.g. ``StorePath.from_uri("s3://bucket/data")``.

    ``str()`` is the URI without credentials. Equal paths on one filesystem compare equal.
    """

    __slots__ = ("_shared", "filesystem", "object_store", "path", "scheme", "uri")

    def __init__(self, filesystem: pafs.FileSystem, path: str, uri: str, scheme: str) -> None:
        self.filesystem = filesystem
        self.path = path.rstrip("/")
        self.uri = redact(uri).rstrip("/")
        self.scheme = scheme
        self.object_store = scheme in _OBJECT_STORES
        # The endpoint given in the URI and the boto3 client, shared with the children.
        self._shared: dict[str, Any] = {}

    @classmethod
    def from_uri(cls, uri: str) -> StorePath:
        """The path that ``uri`` names (its filesystem resolved once)."""
        filesystem, path = resolve_filesystem(uri)
        out = cls(filesystem, path, uri, _scheme(filesystem, uri))
        query = parse_qs(urlsplit(uri).query)
        out._shared["endpoint"] = query.get("endpoint_override", [None])[0]
        return out

    def __truediv__(self, name: str) -> StorePath:
        child = StorePath(self.filesystem, f"{self.path}/{name}", f"{self.uri}/{name}", self.scheme)
        child._shared = self._shared
        return child

    @property
    def name(self) -> str:
        """The last component."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        """The last component without its suffix."""
        return self.name.rsplit(".", 1)[0]

    @property
    def parent(self) -> StorePath:
        """The path one level up."""
        parent = StorePath(
            self.filesystem,
            self.path.rsplit("/", 1)[0],
            self.uri.rsplit("/", 1)[0],
            self.scheme,
        )
        parent._shared = self._shared
        return parent

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"StorePath({self.uri!r})"

    def __fspath__(self) -> str:
        raise TypeError(f"{self.uri} is not a local path; use its filesystem and path")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StorePath) and (other.uri, other.scheme) == (
            self.uri,
            self.scheme,
        )

    def __hash__(self) -> int:
        return hash((self.uri, self.scheme))

    # ------------------------------------------------------------ queries
    def _type(self) -> pafs.FileType:
        return self.filesystem.get_file_info(self.path).type

    def exists(self) -> bool:
        """Whether an object or a directory (prefix) is there."""
        return self._type() != pafs.FileType.NotFound

    def is_file(self) -> bool:
        """Whether an object (file) is there."""
        return self._type() == pafs.FileType.File

    def iterdir(self) -> Iterator[StorePath]:
        """The entries directly under this path (none if it does not exist)."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        for info in self.filesystem.get_file_info(selector):
            yield self / info.base_name

    def glob(self, pattern: str) -> Iterator[StorePath]:
        """Entries whose name ends as ``pattern`` (only ``*<suffix>`` patterns)."""
        if not pattern.startswith("*") or "*" in pattern[1:]:
            raise ValueError(f"`pattern` must be '*<suffix>', got {pattern!r}")
        return (p for p in self.iterdir() if p.name.endswith(pattern[1:]))

    def read_bytes(self) -> bytes:
        """The whole object."""
        with self.filesystem.open_input_stream(self.path) as f:
            return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        """The whole object, decoded."""
        return self.read_bytes().decode(encoding)

    # ------------------------------------------------------------ writes
    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Create the directory; on an object store prefixes are implicit (no-op)."""
        if self.object_store:
            return
        if not exist_ok and self.exists():
            raise FileExistsError(self.uri)
        self.filesystem.create_dir(self.path, recursive=parents)

    def write_bytes(self, data: bytes | memoryview) -> None:
        """Write the whole object: visible only once complete.

        An object store's upload completes in ``close`` (one PUT, or a multipart
        upload completed at the end); elsewhere a temporary name is moved into place.
        """
        if self.object_store:
            with self.filesystem.open_output_stream(self.path) as f:
                f.write(data)
            return
        tmp = f"{self.parent.path}/.{self.name}.{secrets.token_hex(4)}.tmp"
        with self.filesystem.open_output_stream(tmp) as f:
            f.write(data)
        self.filesystem.move(tmp, self.path)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        """Write the whole object from ``text`` (see :meth:`write_bytes`)."""
        self.write_bytes(text.encode(encoding))

    def create_text(self, text: str) -> None:
        """Write ``text`` only if nothing is there; else raise FileExistsError.

        On S3 with boto3 installed this is one conditional PUT (``If-None-Match: *``),
        exclusive even between racing processes. Otherwise it checks, then writes: an
        existing object is refused, two creators racing may both succeed.
        """
        if self.scheme == "s3" and self._put_if_absent(text.encode()):
            return
        if self.exists():
            raise FileExistsError(self.uri)
        self.write_text(text)

    def _put_if_absent(self, data: bytes) -> bool:
        """A conditional PUT through boto3; False if boto3 is not installed."""
        try:
            import boto3  # optional: pyarrow offers no conditional write
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError:
            logger.debug("boto3 not installed: creating %s by check-then-write", self.uri)
            return False
        client = self._shared.get("client")
        if client is None:
            # boto3 reads the same environment variables as pyarrow (keys, endpoint).
            region = getattr(self.filesystem, "region", None) or None
            endpoint = self._shared.get("endpoint")
            client = boto3.client("s3", endpoint_url=endpoint, region_name=region)
            self._shared["client"] = client
        bucket, _, key = self.path.partition("/")
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412) or exc.response.get("Error", {}).get("Code") in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                raise FileExistsError(self.uri) from None
            raise OSError(f"could not write {self.uri}: {exc}") from None
        except BotoCoreError as exc:  # no credentials, no endpoint, a refused parameter
            raise OSError(f"could not write {self.uri}: {exc}") from None
        return True

    def delete_tree(self) -> None:
        """Delete everything under this path (not atomic on object stores)."""
        self.filesystem.delete_dir_contents(self.path, missing_dir_ok=True)
        if self._type() == pafs.FileType.Directory:
            self.filesystem.delete_dir(self.path)


def as_path(root: str | os.PathLike[str] | StorePath) -> Path | StorePath:
    """``Path`` for a local path (or ``file://`` URI), :class:`StorePath` for another URI.

    Example:
        >>> as_path("/tmp/data")
        PosixPath('/tmp/data')
    """
    if isinstance(root, StorePath):
        return root
    text = os.fspath(root)
    if text.startswith("file://"):
        return Path(urlsplit(text).path)
    return StorePath.from_uri(text) if is_uri(text) else Path(text)
