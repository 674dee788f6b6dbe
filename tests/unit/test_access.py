"""What a run's params may reach: local paths under ``local_roots``, private hosts only in ``allowed_hosts``.

No test touches the network: DNS answers come from a fake resolver, and sockets are blocked.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_aleph import access
from airflow_provider_aleph.access import (
    allowed_hosts_param,
    is_local_path,
    local_roots_param,
    origin_of,
    require_public_host,
    require_under_roots,
)
from airflow_provider_aleph.exceptions import InvalidParameter


class FakeResolver:
    """``getaddrinfo`` with fixed answers; records what it was asked."""

    def __init__(self, *addresses: str, error: OSError | None = None) -> None:
        self.addresses = addresses
        self.error = error
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[tuple[Any, ...]]:
        self.calls.append((host, port))
        if self.error is not None:
            raise self.error
        family = {4: socket.AF_INET, 6: socket.AF_INET6}
        return [
            (family[6 if ":" in a else 4], socket.SOCK_STREAM, 6, "", (a, port, 0, 0) if ":" in a else (a, port))
            for a in self.addresses
        ]


def never_called(host: str, port: int) -> list[tuple[Any, ...]]:
    raise AssertionError(f"the resolver was asked about {host}:{port}")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any real lookup or connection fails the test (the module's default resolver included)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network used: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(access, "resolve", refuse)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(b"video")
    (tmp_path / "secret.txt").write_text("secret")
    return folder


def roots_of(*folders: Path) -> tuple[str, ...]:
    return local_roots_param([str(folder) for folder in folders])


# -- local_roots -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", [], ()])
def test_local_roots_empty_means_none(value: object) -> None:
    assert local_roots_param(value) == ()


def test_local_roots_accepts_paths_uris_and_lists(tmp_path: Path) -> None:
    real = os.path.realpath(tmp_path)
    assert local_roots_param(str(tmp_path)) == (real,)
    assert local_roots_param(tmp_path) == (real,)
    assert local_roots_param(f"file://{tmp_path}") == (real,)
    assert local_roots_param(f"file://localhost{tmp_path}") == (real,)
    assert local_roots_param((tmp_path / "a", f"{tmp_path}/b/../c", str(tmp_path / "a"))) == (
        f"{real}/a",
        f"{real}/c",
    )


def test_local_roots_resolves_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert local_roots_param([tmp_path / "link"]) == (os.path.realpath(tmp_path / "real"),)


@pytest.mark.parametrize(
    "value",
    ["data/in", "~/videos", "s3://bucket/key", "file://otherhost/data", "  ", 3, [None], ["/data", "rel"], {"/data"}],
)
def test_local_roots_refuses_what_is_not_an_absolute_folder(value: object) -> None:
    with pytest.raises(ValueError, match="local_roots") as caught:
        local_roots_param(value)
    assert "absolute folder paths" in str(caught.value)


@pytest.mark.parametrize("value", ["{{ params.root }}", ["/data", "/data/{{ params.sub }}"]])
def test_local_roots_refuses_templates(value: object) -> None:
    with pytest.raises(ValueError, match="local_roots is not templated"):
        local_roots_param(value)


# -- allowed_hosts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, [], ()])
def test_allowed_hosts_empty_means_none(value: object) -> None:
    assert allowed_hosts_param(value) == ()


def test_allowed_hosts_normalises_entries() -> None:
    given = ["LocalHost:8080", "10.0.0.5", "[::1]:8080", "::1", "[0:0::1]", "Example.COM.", "127.1", "example.com"]
    assert allowed_hosts_param(given) == ("localhost:8080", "10.0.0.5", "[::1]:8080", "::1", "example.com", "127.0.0.1")
    assert allowed_hosts_param("minio.internal:9000") == ("minio.internal:9000",)


@pytest.mark.parametrize(
    "value",
    [
        ["http://minio:9000"],
        ["minio:0"],
        ["minio:65536"],
        ["minio:port"],
        ["*.internal"],
        ["mi nio"],
        ["minio/path"],
        ["[::1"],
        ["[::1]x"],
        ["[127.0.0.1]:80"],
        ["a:b:c"],
        [""],
        [3],
        ["ok", None],
    ],
)
def test_allowed_hosts_refuses_bad_entries(value: object) -> None:
    with pytest.raises(ValueError, match="allowed_hosts must be a list of 'host' or 'host:port'"):
        allowed_hosts_param(value)


def test_allowed_hosts_refuses_templates() -> None:
    with pytest.raises(ValueError, match="allowed_hosts is not templated"):
        allowed_hosts_param(["{{ params.host }}"])


# -- is_local_path ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "local"),
    [
        (ObjectStoragePath("file:///data/clip.mp4"), True),
        (ObjectStoragePath("local:///data/clip.mp4"), True),
        (ObjectStoragePath("/data/clip.mp4"), True),
        (ObjectStoragePath("s3://bucket/key.mp4"), False),
        (ObjectStoragePath("simplecache::file:///etc/hostname"), True),
        ("/data/clip.mp4", True),
        ("file:///data/clip.mp4", True),
        ("FILE:/data/clip.mp4", True),
        ("simplecache::file:///etc/hostname", True),
        (Path("/data/clip.mp4"), True),
        ("https://example.com/clip.mp4", False),
        ("s3://bucket/key.mp4", False),
        ("gs://bucket/key.mp4", False),
        (3, False),
    ],
)
def test_is_local_path(path: Any, local: bool) -> None:
    assert is_local_path(path) is local


# -- require_under_roots ---------------------------------------------------------------------------


def test_paths_under_a_root_are_allowed(root: Path) -> None:
    roots = roots_of(root)
    for path in (
        root / "clip.mp4",
        str(root / "clip.mp4"),
        f"file://{root}/clip.mp4",
        ObjectStoragePath(f"file://{root}/clip.mp4"),
        str(root),
        f"{root}/sub/../clip.mp4",
    ):
        require_under_roots("video", path, roots)


def test_a_new_output_file_under_a_root_is_allowed(root: Path) -> None:
    target = root / "not" / "yet" / "out.mp4"
    require_under_roots("output_path", ObjectStoragePath(f"file://{target}"), roots_of(root))
    assert not target.parent.exists()


def test_a_file_under_a_symlinked_root_is_allowed(tmp_path: Path, root: Path) -> None:
    (tmp_path / "link").symlink_to(root)
    require_under_roots("video", root / "clip.mp4", (str(tmp_path / "link"),))
    require_under_roots("video", tmp_path / "link" / "clip.mp4", roots_of(root))


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp, root: str(tmp / "secret.txt"),
        lambda tmp, root: f"{root}/../secret.txt",
        lambda tmp, root: f"file://{root}/../secret.txt",
        lambda tmp, root: f"file://{root}/%2e%2e/secret.txt",
        lambda tmp, root: f"file://{root}/x?/../../secret.txt",
        lambda tmp, root: ObjectStoragePath(f"file://{root}/../secret.txt"),
        lambda tmp, root: ObjectStoragePath(f"file://{tmp}/secret.txt"),
        lambda tmp, root: "file:///etc/hostname",
        lambda tmp, root: "file://localhost/etc/hostname",
        lambda tmp, root: "secret.txt",
        lambda tmp, root: Path("/etc/hostname"),
    ],
)
def test_paths_outside_the_roots_are_refused(tmp_path: Path, root: Path, make: Any) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_under_roots("video", make(tmp_path, root), roots_of(root))
    assert caught.value.parameter == "video"


def test_the_prefix_of_a_root_is_not_a_root(tmp_path: Path) -> None:
    (tmp_path / "data" / "in").mkdir(parents=True)
    (tmp_path / "data" / "input2").mkdir()
    roots = roots_of(tmp_path / "data" / "in")
    require_under_roots("video", tmp_path / "data" / "in" / "a.mp4", roots)
    with pytest.raises(InvalidParameter):
        require_under_roots("video", tmp_path / "data" / "input2" / "a.mp4", roots)
    with pytest.raises(InvalidParameter):
        require_under_roots("video", tmp_path / "data" / "in2", roots)


def test_a_symlink_out_of_a_root_is_refused(tmp_path: Path, root: Path) -> None:
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "escape_dir").symlink_to(tmp_path)
    for path in (root / "escape.txt", f"file://{root}/escape_dir/secret.txt", root / "escape_dir" / "new.mp4"):
        with pytest.raises(InvalidParameter):
            require_under_roots("video", path, roots_of(root))


def test_a_symlink_within_a_root_is_allowed(root: Path) -> None:
    (root / "sub").mkdir()
    (root / "sub" / "alias.mp4").symlink_to(root / "clip.mp4")
    require_under_roots("video", root / "sub" / "alias.mp4", roots_of(root))


def test_chained_urls_over_the_local_disk_are_refused(root: Path) -> None:
    for path in (f"simplecache::file://{root}/clip.mp4", ObjectStoragePath(f"simplecache::file://{root}/clip.mp4")):
        with pytest.raises(InvalidParameter, match="chained URL"):
            require_under_roots("video", path, roots_of(root))


def test_the_refusal_says_what_is_allowed_and_how_to_widen_it(tmp_path: Path, root: Path) -> None:
    with pytest.raises(InvalidParameter) as caught:
        require_under_roots("video", "file:///etc/hostname", roots_of(root, tmp_path / "out"))
    message = str(caught.value)
    assert message.startswith("Invalid parameter 'video': 'file:///etc/hostname' is on the worker's disk")
    assert f"local_roots (symlinks and '..' resolved): {str(root)!r}, {str(tmp_path / 'out')!r}." in message
    assert "adds its folder to local_roots=[...] in the DAG code" in message
    assert "not templated, so a run's params cannot widen it" in message


def test_no_roots_allows_no_local_file(root: Path) -> None:
    with pytest.raises(InvalidParameter, match="none, so no local file is allowed") as caught:
        require_under_roots("output_path", root / "clip.mp4", ())
    assert caught.value.parameter == "output_path"


def test_the_path_is_shown_as_given(root: Path) -> None:
    with pytest.raises(InvalidParameter, match=r"'the video \(redacted\)' is on the worker's disk"):
        require_under_roots("video", "/etc/hostname", roots_of(root), shown="the video (redacted)")


@pytest.mark.parametrize(
    "path", [ObjectStoragePath("s3://bucket/key.mp4"), "s3://bucket/key.mp4", "https://10.0.0.1/clip.mp4"]
)
def test_non_local_paths_are_left_alone(path: Any) -> None:
    # No roots at all: a local path would be refused, so passing shows the path was not treated as local.
    require_under_roots("video", path, ())


# -- require_public_host ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/clip.mp4", "loopback"),
        ("http://127.0.0.2:8080/clip.mp4", "loopback"),
        ("http://127.1/clip.mp4", "loopback"),
        ("http://2130706433/clip.mp4", "loopback"),
        ("http://0x7f.0.0.1/clip.mp4", "loopback"),
        ("http://10.1.2.3/clip.mp4", "private"),
        ("http://172.16.0.1/clip.mp4", "private"),
        ("https://192.168.1.10/clip.mp4", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://100.100.100.200/", "not a public address"),
        ("http://[::1]:8080/clip.mp4", "loopback"),
        ("http://[::]/", "unspecified"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://[fd00::5]/", "private"),
        ("http://[ff02::1]/", "multicast"),
        ("http://[::ffff:127.0.0.1]/clip.mp4", "loopback"),
        ("http://[::ffff:10.0.0.1]/clip.mp4", "private"),
    ],
)
def test_literal_private_addresses_are_refused_without_dns(url: str, why: str) -> None:
    with pytest.raises(InvalidParameter, match=why) as caught:
        require_public_host("video", url, resolver=never_called)
    assert caught.value.parameter == "video"


@pytest.mark.parametrize("url", ["http://localhost/x", "http://LocalHost.:8080/x", "https://api.localhost/x"])
def test_localhost_names_are_refused_without_dns(url: str) -> None:
    with pytest.raises(InvalidParameter, match="is a loopback name"):
        require_public_host("video", url, resolver=never_called)


@pytest.mark.parametrize("url", ["https://93.184.215.14/clip.mp4", "http://[2606:4700:4700::1111]:8080/clip.mp4"])
def test_literal_public_addresses_are_allowed_without_dns(url: str) -> None:
    require_public_host("video", url, resolver=never_called)


def test_a_name_resolving_to_public_addresses_is_allowed() -> None:
    resolver = FakeResolver("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    require_public_host("video", "https://Cdn.Example.com/clip.mp4?X-Amz-Signature=abc", resolver=resolver)
    assert resolver.calls == [("cdn.example.com", 443)]


@pytest.mark.parametrize(
    ("addresses", "shown"),
    [
        (("93.184.215.14", "10.0.0.7"), "10.0.0.7 (a private address)"),
        (("::1",), "::1 (a loopback address)"),
        (("fe80::1%eth0", "93.184.215.14"), "fe80::1 (a link-local address)"),
        (("::ffff:169.254.169.254",), f"{ipaddress.ip_address('::ffff:169.254.169.254')} (a link-local address)"),
    ],
)
def test_a_name_resolving_to_any_private_address_is_refused(addresses: tuple[str, ...], shown: str) -> None:
    resolver = FakeResolver(*addresses)
    with pytest.raises(InvalidParameter) as caught:
        require_public_host("video", "http://rebind.example.com:8080/c.mp4", resolver=resolver)
    assert f"host rebind.example.com:8080 resolves to {shown}" in str(caught.value)
    assert resolver.calls == [("rebind.example.com", 8080)]


def test_a_name_that_does_not_resolve_is_left_to_the_request() -> None:
    resolver = FakeResolver(error=socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    require_public_host("video", "https://nowhere.example/clip.mp4", resolver=resolver)
    assert resolver.calls == [("nowhere.example", 443)]


def test_the_module_resolver_is_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "resolve", FakeResolver("192.168.0.9"))
    with pytest.raises(InvalidParameter, match=r"resolves to 192\.168\.0\.9"):
        require_public_host("video", "http://nas.example/clip.mp4")


def test_the_refusal_names_the_host_not_the_query_and_says_how_to_allow_it() -> None:
    url = "http://127.0.0.2:8080/private/clip.mp4?X-Amz-Signature=SECRET123"
    with pytest.raises(InvalidParameter) as caught:
        require_public_host("video", url, resolver=never_called)
    message = str(caught.value)
    assert message.startswith("Invalid parameter 'video': host 127.0.0.2:8080 is a loopback address")
    assert "SECRET123" not in message
    assert "/private/" not in message
    assert "Segmind could not fetch a private address" in message
    assert "the worker does not contact its own network for a run's params" in message
    assert "allowed_hosts=['127.0.0.2:8080'] in the DAG code" in message


@pytest.mark.parametrize(
    ("url", "exempt"),
    [
        ("http://127.0.0.2:8080/clip.mp4", ("127.0.0.2",)),
        ("http://127.0.0.2:9999/clip.mp4", ("127.0.0.2",)),
        ("http://127.0.0.2:8080/clip.mp4", ("127.0.0.2:8080",)),
        ("http://minio.internal/clip.mp4", ("minio.internal:80",)),
        ("https://MinIO.internal/clip.mp4", ("minio.internal",)),
        ("http://[::1]:8080/clip.mp4", ("[::1]:8080",)),
        ("http://[::1]:8080/clip.mp4", ("::1",)),
        ("http://localhost:8999/v1/model", (origin_of("http://LOCALHOST:8999"),)),
    ],
)
def test_exempt_hosts_are_allowed_without_dns(url: str, exempt: tuple[str, ...]) -> None:
    require_public_host("video", url, exempt=exempt, resolver=never_called)


@pytest.mark.parametrize(
    ("url", "exempt"),
    [
        ("http://127.0.0.2:8081/clip.mp4", ("127.0.0.2:8080",)),
        ("https://minio.internal/clip.mp4", ("minio.internal:80",)),
        ("http://127.0.0.3:8080/clip.mp4", ("127.0.0.2",)),
        ("http://[::1]:8081/clip.mp4", ("[::1]:8080",)),
    ],
)
def test_an_exemption_for_another_port_or_host_does_not_apply(url: str, exempt: tuple[str, ...]) -> None:
    resolver = FakeResolver("10.0.0.4")
    with pytest.raises(InvalidParameter, match=r"private address|loopback address"):
        require_public_host("video", url, exempt=exempt, resolver=resolver)


@pytest.mark.parametrize("url", ["s3://10.0.0.1/bucket/key", "file:///etc/hostname", "ftp://127.0.0.1/x"])
def test_other_schemes_are_left_alone(url: str) -> None:
    require_public_host("video", url, resolver=never_called)


@pytest.mark.parametrize("url", ["http://[::1/x", "http:///x", "http://:80/x", "http://exa mple.com/x"])
def test_a_url_without_a_clear_host_is_refused(url: str) -> None:
    with pytest.raises(InvalidParameter, match=r"not a valid URL|has no host") as caught:
        require_public_host("video", url, resolver=never_called)
    assert caught.value.parameter == "video"


# -- origin_of -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://api.segmind.com/v1", "api.segmind.com:443"),
        ("HTTP://Example.COM/x?y=1", "example.com:80"),
        ("http://127.0.0.1:8999", "127.0.0.1:8999"),
        ("http://[::1]:8080/x", "[::1]:8080"),
        ("https://[0:0::1]/x", "[::1]:443"),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin
    assert allowed_hosts_param([origin]) == (origin,)


def test_origin_of_needs_a_port() -> None:
    with pytest.raises(ValueError, match="no default port"):
        origin_of("ftp://files.example.com/x")


@pytest.mark.parametrize(
    ("url", "host"), [("http://127.0.0.1:8765", "127.0.0.1"), ("https://API.Segmind.com/v2", "api.segmind.com")]
)
def test_host_of_admits_any_port_of_the_connections_own_host(url: str, host: str) -> None:
    assert access.host_of(url) == host
    assert access.allowed_hosts_param([access.host_of(url)]) == (host,)


def test_the_connections_own_host_exempts_its_other_ports_but_not_a_neighbour() -> None:
    own = (access.host_of("http://127.0.0.1:8765"),)
    access.require_public_host("video", "http://127.0.0.1:9999/in.mp4", exempt=own)
    with pytest.raises(InvalidParameter, match="allowed_hosts"):
        access.require_public_host("video", "http://127.0.0.2:8765/in.mp4", exempt=own)
