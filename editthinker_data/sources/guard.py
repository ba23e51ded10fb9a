"""Where a source's images may come from. A manifest is data, not configuration: a path in
it may only reach files under the input's own folders (its file's folder, its path options
and `allowed_roots`), so a hostile `../`, absolute path or symlink cannot publish files from
elsewhere on the machine. URLs are refused unless the input allows them, and then fetched
only from public addresses (loopback only when the input says so): never a private network
or a cloud metadata endpoint. The address is checked once and the connection pinned to it,
so a DNS answer cannot change between check and fetch."""

from __future__ import annotations

import ipaddress
import os
import posixpath
import socket
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

MAX_REDIRECTS = 5


class Refused(ValueError):
    """An image reference the input's policy does not allow; `reason` is the counted code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class ImagePolicy:
    roots: tuple[str, ...]  # real local folders and s3:// prefixes
    allow_urls: bool = False
    allow_loopback: bool = False
    max_bytes: int = 64 * 1024 * 1024
    timeout_s: float = 30.0

    @classmethod
    def of(cls, roots: list[str], **kw) -> ImagePolicy:
        norm = [r.rstrip("/") + "/" if r.startswith("s3://") else os.path.realpath(r) for r in roots if r]
        return cls(tuple(dict.fromkeys(norm)), **kw)


def is_url(location: str) -> bool:
    return urlsplit(location).scheme in ("http", "https")


def check(location: str, policy: ImagePolicy) -> str:
    """The location to read for an image reference (file:// becomes a path), or `Refused`.
    http(s) URLs pass only when allowed, and are checked again by `fetch`."""
    scheme = urlsplit(location).scheme if "://" in location else ""
    if scheme in ("http", "https", "file") and not policy.allow_urls:
        raise Refused(
            "url_not_allowed",
            f"image {location} is a {scheme}:// URL; URLs are refused unless the input sets allow_urls: true",
        )
    if scheme in ("http", "https"):
        return location
    if scheme == "s3":
        bucket, _, key = location.removeprefix("s3://").partition("/")
        normal = f"s3://{bucket}/{posixpath.normpath('/' + key).lstrip('/')}"
        if key.split("/").count("..") == 0 and any(normal.startswith(r) for r in policy.roots if "://" in r):
            return location
        raise Refused(
            "path_outside_source", f"image {location} is outside the input's folders{_roots(policy)}"
        )
    if scheme == "file":
        location = unquote(urlsplit(location).path)
    elif scheme:
        raise Refused("url_not_allowed", f"image {location}: {scheme}:// is not a supported image location")
    real = os.path.realpath(location)
    for root in policy.roots:
        if "://" not in root and (real == root or real.startswith(root.rstrip(os.sep) + os.sep)):
            return location
    shown = f"image {location}" + (f" (resolves to {real})" if real != os.path.abspath(location) else "")
    raise Refused("path_outside_source", f"{shown} is outside the input's folders{_roots(policy)}")


def _roots(policy: ImagePolicy) -> str:
    return f" ({', '.join(policy.roots)}); list its folder in the input's allowed_roots to use it"


def fetch(url: str, policy: ImagePolicy) -> bytes:
    """The bytes of an http(s) image, from a checked address, at most `max_bytes`; redirects
    are followed (a few) and each target is checked like the first."""
    import httpx  # only inputs with allow_urls need it

    with httpx.Client(trust_env=False, timeout=policy.timeout_s, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise Refused("url_not_allowed", f"image {url}: only http(s) URLs with a host are fetched")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = _checked_address(parts.hostname, port, policy, url)
            host = f"[{address}]" if address.version == 6 else str(address)
            pinned = parts._replace(netloc=f"{host}:{port}").geturl()
            shown_host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
            ext = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
            try:
                with client.stream("GET", pinned, headers={"Host": shown_host}, extensions=ext) as resp:
                    if resp.is_redirect and "location" in resp.headers:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    if resp.status_code != 200:
                        raise Refused("image_missing", f"image {url}: HTTP {resp.status_code}")
                    data = bytearray()
                    for chunk in resp.iter_bytes():
                        data += chunk
                        if len(data) > policy.max_bytes:
                            raise Refused(
                                "image_too_large",
                                f"image {url} is larger than source.max_image_bytes={policy.max_bytes}",
                            )
                    return bytes(data)
            except httpx.HTTPError as err:
                raise Refused("image_fetch_failed", f"image {url}: {type(err).__name__}: {err}") from None
    raise Refused("image_fetch_failed", f"image {url}: more than {MAX_REDIRECTS} redirects")


def _checked_address(
    host: str, port: int, policy: ImagePolicy, url: str
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address to connect to; every address the host resolves to must be public (or
    loopback, when allowed), so a name with one private answer is refused outright."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise Refused("image_fetch_failed", f"image {url}: cannot resolve {host}: {err}") from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address.is_loopback and policy.allow_loopback:
            pass
        elif address.is_loopback or not address.is_global or address.is_multicast:
            kind = (
                "loopback"
                if address.is_loopback
                else "link-local"
                if address.is_link_local
                else "private or reserved"
            )
            hint = "; set allow_loopback: true for a local image server" if address.is_loopback else ""
            raise Refused(
                "url_private_address",
                f"image {url}: {host} resolves to {address}, a {kind} address; "
                f"images are fetched only from public addresses{hint}",
            )
        addresses.append(address)
    if not addresses:
        raise Refused("image_fetch_failed", f"image {url}: {host} has no address")
    return addresses[0]
