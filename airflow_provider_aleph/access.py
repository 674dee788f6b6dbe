"""What a run's params may reach: local files only under ``local_roots``, private hosts only in ``allowed_hosts``.

Params are user input, not DAG code; both lists are set by the DAG author and are not templated.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_aleph.exceptions import InvalidParameter

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
PathValue = ObjectStoragePath | str | os.PathLike[str]
Resolver = Callable[[str, int], Sequence[tuple[Any, ...]]]

#: The DNS lookup used by :func:`require_public_host`; tests replace it (or pass ``resolver=``).
resolve: Resolver = socket.getaddrinfo
DEFAULT_PORTS = {"http": 80, "https": 443}
_LOCAL_PROTOCOLS = frozenset({"", "file", "local"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_HOSTNAME = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_][a-z0-9_-]{0,62})*")
# The forms inet_aton reads as IPv4 ("127.1", "0x7f.1", "2130706433"), which ipaddress does not.
_LOOSE_IPV4 = re.compile(r"[0-9a-fx.]+")


def _scheme(text: str) -> str:
    match = _SCHEME.match(text)
    return match.group(1).lower() if match else ""


def _items(value: object) -> list[object]:
    if value is None or (isinstance(value, str | list | tuple) and not value):
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _root(item: object) -> str:
    wanted = "absolute folder paths on the worker (str or os.PathLike, alone or in a list), e.g. ['/data/videos']"
    text = str(item) if isinstance(item, ObjectStoragePath) else item
    if isinstance(text, os.PathLike):
        text = os.fsdecode(text)
    if not isinstance(text, str) or not text.strip() or "\0" in text:
        raise ValueError(f"local_roots must be {wanted}; got {item!r}")
    if "{{" in text or "{%" in text:
        raise ValueError(
            "local_roots is not templated on purpose: a run's params must not choose which folders the worker "
            f"may read or write. Write the folders in the DAG code; got {text!r}"
        )
    if _scheme(text) == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"local_roots must be {wanted}; a file:// URI on another host is not: {text!r}")
        text = unquote(parts.path)
    if _scheme(text) or not os.path.isabs(text):
        raise ValueError(f"local_roots must be {wanted}; got {text!r}")
    return os.path.realpath(text)


def local_roots_param(value: object) -> tuple[str, ...]:
    """The ``local_roots`` operator parameter, checked at DAG parse time: resolved absolute folders.

    :param value: None, a folder (str, ``os.PathLike`` or ``file://`` URI), or a list or tuple of them.
    """
    return tuple(dict.fromkeys(_root(item) for item in _items(value)))


def _canonical_host(host: str) -> str:
    text = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    address = _literal_address(text)
    return str(address) if address else text


def _host_entry(entry: object) -> tuple[str, int | None]:
    """``(host, port)`` of an ``allowed_hosts`` entry: ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6."""
    wanted = "'host' or 'host:port' strings (IPv6 as '[::1]:8080' or '::1'), e.g. ['127.0.0.1:8080']"
    text = entry.strip().lower() if isinstance(entry, str) else ""
    if "{{" in text or "{%" in text:
        raise ValueError(f"allowed_hosts is not templated on purpose: write the hosts in the DAG code; got {entry!r}")
    host, port, bracketed = text, "", text.startswith("[")
    if bracketed:
        host, closed, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("?" if rest or not closed else "")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    canonical = _canonical_host(host)
    if bracketed or ":" in host:
        valid_host = isinstance(_literal_address(canonical), ipaddress.IPv6Address)
    else:
        valid_host = _literal_address(canonical) is not None or bool(_HOSTNAME.fullmatch(canonical))
    if not (valid_host and (not port or (port.isdigit() and 0 < int(port) < 65536))):
        raise ValueError(f"allowed_hosts must be a list of {wanted}; got {entry!r}")
    return canonical, int(port) if port else None


def _origin(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host and port is not None else host
    return shown if port is None else f"{shown}:{port}"


def allowed_hosts_param(value: object) -> tuple[str, ...]:
    """The ``allowed_hosts`` operator parameter, checked at DAG parse time: lower-cased ``host[:port]`` entries.

    :param value: None, or a list or tuple of ``host`` / ``host:port`` strings (a single string is one entry).
    """
    return tuple(dict.fromkeys(_origin(*_host_entry(item)) for item in _items(value)))


def _chained_local(path: object) -> bool:
    """A wrapper over the local disk (``simplecache::file:///x``), whose real path cannot be checked."""
    inner = {_scheme(segment) for segment in str(path).split("::")[1:]}
    if isinstance(path, ObjectStoragePath):
        inner.add(str(path.storage_options.get("target_protocol") or "-"))
    return bool(inner & (_LOCAL_PROTOCOLS - {""}))


def is_local_path(path: PathValue) -> bool:
    """Whether ``path`` is on the worker's disk: a local ``ObjectStoragePath``, a path (absolute, or relative to
    the worker's working folder), a ``file://`` URI, or a chained URL over one (``simplecache::file://``).

    :param path: an ``ObjectStoragePath``, an ``os.PathLike``, or a string (a path or a URI).
    """
    if isinstance(path, ObjectStoragePath):
        # The protocol, not ``path.fs``: building a remote filesystem may look up its connection.
        return path.protocol in _LOCAL_PROTOCOLS or _chained_local(path)
    if isinstance(path, os.PathLike):
        return True
    if not isinstance(path, str):
        return False
    text = path.strip()
    return _scheme(text) in _LOCAL_PROTOCOLS or _chained_local(text)


def _candidates(path: PathValue) -> set[str]:
    """Every reading of a local path the worker might open; each one must be under a root."""
    if isinstance(path, ObjectStoragePath):
        found = {str(path.path), str(path)} if path.protocol == "" else {str(path.path)}
    elif isinstance(path, os.PathLike):
        found = {os.fsdecode(path)}
    elif _scheme(text := path.strip()):
        # As the operator opens it (ObjectStoragePath keeps %-escapes and '?') and as RFC 8089 reads it;
        # a file URI naming another host ("//" here) is under no root.
        parts = urlsplit(text)
        found = {str(ObjectStoragePath(text).path), parts.path if parts.netloc in ("", "localhost") else "//"}
    else:
        found = {text}
    return found | {unquote(candidate) for candidate in found}


def require_under_roots(parameter: str, path: PathValue, roots: tuple[str, ...], *, shown: str | None = None) -> None:
    """Refuse a local path that does not resolve (symlinks and ``..`` followed) to a folder in ``roots``.

    :param parameter: the operator parameter the path came from, for the message.
    :param path: the path; anything not on the local disk is left alone.
    :param roots: the operator's ``local_roots``, as :func:`local_roots_param` returns them.
    :param shown: how to show the path in the message (default: the path as given).
    """
    if not is_local_path(path):
        return
    listed = ", ".join(repr(root) for root in roots) if roots else "none, so no local file is allowed"
    refusal = (
        f"{shown or str(path)!r} is on the worker's disk; local files are read and written only under the "
        f"folders listed in the operator's local_roots (symlinks and '..' resolved): {listed}. To allow it, the "
        "DAG author adds its folder to local_roots=[...] in the DAG code; local_roots is not templated, so a "
        "run's params cannot widen it"
    )
    if _chained_local(path):
        raise InvalidParameter(parameter, f"{refusal}. Give a chained URL's file as a plain path or file:// URI")
    real_roots = [os.path.realpath(root) for root in roots]
    for candidate in _candidates(path):
        try:
            real = os.path.realpath(candidate)
        except (OSError, ValueError):
            raise InvalidParameter(parameter, refusal) from None
        if not any(os.path.commonpath([root, real]) == root for root in real_roots):
            raise InvalidParameter(parameter, refusal)


def _split_url(url: str) -> tuple[str, str, int | None]:
    """``(scheme, canonical host, effective port)`` as httpx, which sends the worker's requests, reads them."""
    parsed = httpx.URL(url)
    port = parsed.port or DEFAULT_PORTS.get(parsed.scheme)
    return parsed.scheme, _canonical_host(parsed.raw_host.decode("ascii")), port


def origin_of(url: str) -> str:
    """``host:port`` of a URL (lower-case host, the scheme's default port), the form ``allowed_hosts`` takes.

    :param url: an http(s) URL, such as a connection's base URL.
    """
    _, host, port = _split_url(url)
    if not host or port is None:
        raise ValueError(f"{url!r} has no host, or no port and no default port for its scheme")
    return _origin(host, port)


def host_of(url: str) -> str:
    """The host of a URL as an ``allowed_hosts`` entry that admits any port (the connection's own hosts).

    :param url: an http(s) URL, such as a connection's base URL.
    """
    _, host, _ = _split_url(url)
    if not host:
        raise ValueError(f"{url!r} has no host")
    return _origin(host, None)


def _literal_address(host: str) -> Address | None:
    """The address a host names literally (an IPv6 zone dropped), read as ``getaddrinfo`` reads it."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host)) if _LOOSE_IPV4.fullmatch(host) else None
        except OSError:
            return None


def _not_public(address: Address) -> str | None:
    """Why the worker must not contact ``address`` for a run's params, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    return None if address.is_global else "not a public address"


def require_public_host(
    parameter: str, url: str, *, exempt: tuple[str, ...] = (), resolver: Resolver | None = None
) -> None:
    """Refuse an http(s) URL whose host is, or resolves to, a private, loopback or otherwise local address.

    :param parameter: the operator parameter the URL came from, for the message.
    :param url: the URL; other schemes are left alone.
    :param exempt: ``host`` (any port) or ``host:port`` entries allowed as they are, unresolved.
    :param resolver: the DNS lookup (``socket.getaddrinfo``'s signature); default: the module's ``resolve``.
    """
    try:
        scheme, host, port = _split_url(url)
        agreed = _canonical_host(urlsplit(url).hostname or "") == _canonical_host(httpx.URL(url).host)
    except (httpx.InvalidURL, ValueError):
        raise InvalidParameter(parameter, "the value is not a valid URL") from None
    if scheme not in DEFAULT_PORTS:
        return
    if not host or not agreed:
        raise InvalidParameter(parameter, "the URL has no host, or URL parsers read its host differently")
    allowed = {_host_entry(entry) for entry in exempt}
    if (host, None) in allowed or (host, port) in allowed:
        return
    origin = _origin(host, port)
    address = _literal_address(host)
    why: str | None
    if address is not None:
        why = f"is {reason}" if (reason := _not_public(address)) else None
    elif host == "localhost" or host.endswith(".localhost"):
        why = "is a loopback name"
    else:
        try:
            found = (resolver or resolve)(host, port or 0)
        except (OSError, UnicodeError):
            # Not a reason to refuse: the name reaches nothing now, and the size check's HEAD request
            # (or Segmind) reports an unreachable host with a clearer message than ours could.
            return
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found}
        reasons = {str(addr): reason for addr in addresses if (reason := _not_public(addr))}
        why = "resolves to " + ", ".join(f"{a} ({r})" for a, r in sorted(reasons.items())) if reasons else None
    if why:
        raise InvalidParameter(
            parameter,
            f"host {origin} {why}: Segmind could not fetch a private address, and the worker does not contact "
            "its own network for a run's params. To allow it, the DAG author lists the host in the operator's "
            f"allowed_hosts=[{origin!r}] in the DAG code (not templated)",
        )


def require_public_peer(parameter: str, url: str, response: httpx.Response, *, exempt: tuple[str, ...] = ()) -> None:
    """Refuse a response that came from a private address, whatever the URL's name resolved to when checked.

    Without a proxy the worker connected to the server itself, and the connection knows its address; with
    a proxy (``HTTPS_PROXY`` and kin) the proxy resolved the name, so there is nothing here to check.

    :param parameter: the operator parameter the URL came from, for the message.
    :param url: the URL asked for.
    :param response: the answer, its body not yet read.
    :param exempt: ``host`` (any port) or ``host:port`` entries the DAG author allowed.
    """
    scheme, host, port = _split_url(url)
    allowed = {_host_entry(entry) for entry in exempt}
    if (host, None) in allowed or (host, port) in allowed:
        return
    if urllib.request.getproxies().get(scheme) and not urllib.request.proxy_bypass(host):
        return
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        raise InvalidParameter(
            parameter, f"the worker could not tell which address {_origin(host, port)} answered from"
        )
    address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    if reason := _not_public(address):
        raise InvalidParameter(
            parameter,
            f"host {_origin(host, port)} answered from {address} ({reason}) although it resolved to a public "
            "address when checked: the worker does not read its own network for a run's params",
        )
