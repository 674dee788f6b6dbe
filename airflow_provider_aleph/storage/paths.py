"""Telling object storage from web URLs, building ObjectStoragePath objects, and showing URLs without secrets."""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from airflow.providers.common.compat.sdk import ObjectStoragePath, mask_secret

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_WEB_SCHEMES = frozenset({"http", "https"})
# Query parameters of signed URLs that work as credentials (S3 and GCS signatures and tokens, Azure SAS).
_SECRET_QUERY = re.compile(r"signature|token|credential|^sig$", re.IGNORECASE)
_PRIVATE_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".lan", ".home.arpa")


class Source(enum.Enum):
    """Where an input file comes from, which decides how Segmind gets it."""

    URL = "url"
    """An http(s) URL: Segmind fetches it itself."""
    STORAGE = "storage"
    """An object storage URI (``s3://``, ``gs://``, ``file://``...) or an ``ObjectStoragePath``: the worker
    presigns or uploads it."""


def classify(value: object) -> Source | None:
    """Whether ``value`` is an http(s) URL, object storage, or neither (None): the one place inputs are told apart.

    :param value: an operator input as given (surrounding spaces are ignored).
    """
    if isinstance(value, ObjectStoragePath):
        return Source.STORAGE
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _SCHEME.match(text)
    if match is None or len(text) == match.end() or any(char.isspace() for char in text):
        return None
    if match.group(1).lower() in _WEB_SCHEMES:
        return Source.URL if urlsplit(text).netloc else None
    return Source.STORAGE


def is_http_url(value: object) -> bool:
    """Whether ``value`` is an http(s) URL string (which Segmind can fetch itself)."""
    return classify(value) is Source.URL


def is_object_storage(value: object) -> bool:
    """Whether ``value`` is object storage: an ``ObjectStoragePath``, or a URI string whose scheme is not http(s).

    :param value: an operator input as given.
    """
    return classify(value) is Source.STORAGE


def to_path(value: str | ObjectStoragePath, *, conn_id: str | None = None) -> ObjectStoragePath:
    """The ``ObjectStoragePath`` for a URI; a connection named in it (``s3://my_aws@bucket/key``) is kept.

    :param value: an object storage URI or an ``ObjectStoragePath`` (returned as it is).
    :param conn_id: the connection to use when the URI names none.
    """
    if isinstance(value, ObjectStoragePath):
        return value
    if not is_object_storage(value):
        raise ValueError(f"not an object storage URI (such as s3://bucket/key or file:///path): {value!r}")
    text = value.strip()
    if conn_id and "@" not in urlsplit(text).netloc:
        return ObjectStoragePath(text, conn_id=conn_id)
    # Airflow 3.0 reads the URI's own connection only when no conn_id keyword is passed, even None.
    return ObjectStoragePath(text)


def conn_id_of(path: ObjectStoragePath) -> str | None:
    """The Airflow connection a path uses (Airflow 3.0 keeps it in ``storage_options``)."""
    return getattr(path, "conn_id", None) or path.storage_options.get("conn_id")


def bucket_of(path: ObjectStoragePath) -> str | None:
    """The bucket or container of a remote path, or None for a local one."""
    if is_local(path.fs):
        return None
    bucket = str(path.path).lstrip("/").split("/", 1)[0]
    return bucket or None


def is_local(fs: AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local disk (where directories exist and renames are atomic)."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def display_url(url: str) -> str:
    """``url`` without user info, query or fragment, for logs and messages: a signature never shows."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    shown = urlunsplit((parts.scheme, host, parts.path, "", ""))
    return f"{shown}?..." if parts.query else shown


def mask_url_secrets(url: str) -> None:
    """Register the credential parts of a signed URL's query with Airflow's secret masker."""
    query = urlsplit(url).query
    raw = dict(pair.partition("=")[::2] for pair in query.split("&") if pair)
    for name, value in parse_qsl(query):
        if _SECRET_QUERY.search(name) and value:
            mask_secret(value)
            if raw.get(name, value) != value:
                mask_secret(raw[name])


def is_public_url(url: str) -> bool:
    """Whether a URL's host could be reachable from Segmind's servers (not loopback, private or local)."""
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return False
    try:
        address: Any = ipaddress.ip_address(host)
    except ValueError:
        return "." in host and host != "localhost" and not host.endswith(_PRIVATE_SUFFIXES)
    return not (address.is_private or address.is_loopback or address.is_link_local or address.is_reserved)
