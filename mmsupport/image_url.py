"""Photos named by URL: fetched without letting callers reach the server's own network (SSRF).

:func:`fetch_image_bytes` takes ``http(s)://`` and ``data:image/…;base64,`` URLs only. For a web URL it resolves the
host itself, refuses it unless every address is public (``ipaddress.is_global``: no loopback, private, link-local
such as cloud metadata at 169.254.169.254, carrier-grade NAT, multicast or reserved ranges), then connects to the
address it checked (the host name still goes in ``Host`` and TLS SNI, and the certificate is verified for it), so a
DNS answer that changes between the check and the request cannot redirect it. Redirects are followed by hand, each
hop checked the same way. The body is read up to ``max_bytes`` and no further. ``allow_private=True`` (setting
``MMSUPPORT_ALLOW_PRIVATE_URLS``) lifts the address rule for shops whose images live on an internal host.

The bytes are only bytes: callers decode them through :mod:`mmsupport.images` like any upload.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import urllib.parse

import httpx

from mmsupport.errors import InvalidInput

#: Redirects followed before giving up.
MAX_REDIRECTS = 3
#: Seconds to connect and between received bytes.
TIMEOUT_SECONDS = 10.0

_REFUSED_HOST = "is a private, loopback or reserved network address, which this app does not fetch."


def fetch_image_bytes(url: str, *, max_bytes: int, allow_private: bool = False,
                      timeout: float = TIMEOUT_SECONDS) -> bytes:
    """The bytes behind ``url`` (an ``http(s)://`` or ``data:`` URL), at most ``max_bytes`` of them.

    Raises :class:`~mmsupport.errors.InvalidInput` saying what is wrong: another scheme, a host that does not
    resolve or is not public (unless ``allow_private``), an HTTP error, a body over the limit.
    """
    url = (url or "").strip()
    if url.startswith("data:"):
        return _data_url(url, max_bytes)
    for _ in range(MAX_REDIRECTS + 1):
        response_url, location, data = _get(url, max_bytes, allow_private, timeout)
        if location is None:
            return data
        url = urllib.parse.urljoin(response_url, location)
    raise InvalidInput(f"The image URL redirects more than {MAX_REDIRECTS} times.", hint="Send the final URL.")


def _data_url(url: str, max_bytes: int) -> bytes:
    header, _, payload = url.partition(",")
    if not header.startswith("data:image/") or not header.endswith(";base64"):
        raise InvalidInput("A data URL must carry a base64 image.", hint="Send data:image/png;base64,… .")
    if len(payload) * 3 // 4 > max_bytes:
        raise InvalidInput(f"The image is over the {max_bytes / 2**20:g} MB limit.",
                           hint="Send a smaller or more compressed photo.")
    try:
        return base64.b64decode(payload, validate=True)
    except ValueError:
        raise InvalidInput("The image data URL is not valid base64.", hint="Send data:image/png;base64,… .") from None


def _checked_address(url: httpx.URL, allow_private: bool) -> str:
    """The address to connect to for ``url``'s host: the first it resolves to, all of them public."""
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidInput("Image URLs must start with http:// or https://.",
                           hint="Send a web address of the photo, or upload it.")
    try:
        infos = socket.getaddrinfo(url.host, url.port or (443 if url.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise InvalidInput(f"The image URL's host {url.host} could not be found.",
                           hint="Check the address.") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not allow_private:
        for address in addresses:
            mapped = getattr(address, "ipv4_mapped", None) or address
            if not mapped.is_global:
                raise InvalidInput(f"The image URL's host {url.host} {_REFUSED_HOST}",
                                   hint="Send a public web address of the photo, or upload it.")
    return str(addresses[0])


def _get(url: str, max_bytes: int, allow_private: bool, timeout: float) -> tuple[str, str | None, bytes]:
    """One GET to the checked address: (the URL asked, the redirect target or ``None``, the body)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise InvalidInput("The image URL is not a valid address.", hint="Check the address.") from None
    address = _checked_address(parsed, allow_private)
    pinned = parsed.copy_with(host=address)
    headers = {"Host": parsed.netloc.decode("ascii").rpartition("@")[2], "Accept": "image/*"}
    too_big = InvalidInput(f"The image at {parsed.host} is over the {max_bytes / 2**20:g} MB limit.",
                           hint="Send a smaller or more compressed photo.")
    client = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)
    try:
        with client, client.stream("GET", pinned, headers=headers,
                                   extensions={"sni_hostname": parsed.host}) as response:
            if response.is_redirect:
                return url, response.headers.get("location"), b""
            if response.status_code >= 400:
                raise InvalidInput(f"Fetching the image failed: {parsed.host} answered HTTP {response.status_code}.",
                                   hint="Check that the URL opens in a browser.")
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise too_big
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > max_bytes:
                    raise too_big
    except httpx.HTTPError as error:
        raise InvalidInput(f"Fetching the image from {parsed.host} failed ({type(error).__name__}).",
                           hint="Check the address, or upload the photo instead.") from None
    return url, None, bytes(data)
