"""Where webhooks may go, and how they get there: public addresses only, unless allowed private.

A job's notify_url is its tenant's choice, and the worker POSTs to it from inside the service's network.
Unchecked, a tenant could point it at the database, Redis, an admin port or a cloud metadata service
(169.254.169.254) and use the worker to reach them (server-side request forgery). The API refuses such a
URL when the job is submitted (422), and the worker checks again, resolving the name, before each
attempt: a name may resolve to another address by then.

The worker then connects to the very address it checked (`post`): were the name looked up again to
connect, a DNS-rebinding resolver could answer a public address to the check and a private one to the
connection. The request keeps the name in its Host header and as its TLS server name, so virtual hosts
and certificates (verified against the name) work as with any client.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_HINT = "set TRAINYARD_WEBHOOK_ALLOW_PRIVATE=true for receivers inside your network"


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address.is_global and not address.is_multicast


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _resolved(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order of preference; raises socket.gaierror."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _why_refused(host: str, addresses: list[IPAddress]) -> str | None:
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is this machine; {ALLOW_HINT}"
    for address in addresses:
        if not _public(address):
            shown = host if host == str(address) else f"{host} ({address})"
            return f"{shown} is not a public address; {ALLOW_HINT}"
    return None


def _host_and_port(url: httpx.URL) -> tuple[str, int]:
    return url.host.lower().rstrip("."), url.port or (443 if url.scheme == "https" else 80)


def refusal(url: str, *, allow_private: bool, resolve: bool) -> str | None:
    """Why a webhook may not be sent to `url`, or None. `resolve`: judge what the name resolves to, as
    `pin` does when the worker sends; the API does not, so a submission never waits on DNS: it judges
    addresses and `localhost` only."""
    if allow_private:
        return None
    if resolve:
        try:
            pin(url, allow_private=False)
        except Refused as refused:
            return str(refused)
        except (socket.gaierror, UnicodeError):
            pass  # an unknown name: sending fails with its own error
        return None
    host, _ = _host_and_port(httpx.URL(url))
    literal = _literal(host)
    return _why_refused(host, [literal] if literal is not None else [])


@dataclass(frozen=True)
class Pinned:
    """A URL whose host has been looked up once and judged: where to connect, and the name it stands for."""

    url: httpx.URL  # the URL with the checked address in place of the name
    host: str  # the Host header: the name (with its port when not the scheme's)
    server_name: str  # the TLS server name (SNI), which the certificate is verified against


class Refused(PermissionError):
    """The URL leads to an address webhooks may not reach."""


def pin(url: str, *, allow_private: bool) -> Pinned:
    """Look the URL's host up once, check every address it has (unless allowed private), take the first.

    Raises Refused for a non-public address, socket.gaierror for a name that does not resolve.
    """
    parsed = httpx.URL(url)
    host, port = _host_and_port(parsed)
    literal = _literal(host)
    addresses = [literal] if literal is not None else _resolved(parsed.raw_host.decode(), port)
    if not allow_private and (reason := _why_refused(host, addresses)):
        raise Refused(reason)
    return Pinned(parsed.copy_with(host=str(addresses[0])), parsed.netloc.decode(), parsed.raw_host.decode())


def post(
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    timeout: float,
    allow_private: bool,
    verify: ssl.SSLContext | bool = True,
) -> int:
    """POST to `url` at the address `pin` checked; answers the status code. `verify`: httpx's (default:
    the certifi trust store), a context for tests with their own authority."""
    pinned = pin(url, allow_private=allow_private)
    # Streamed and never read: a receiver's answer is its status code, whatever body it sends.
    # Redirects are not followed: the caller sees the 3xx (and a redirect would skip the check).
    # A transport of its own: httpx then takes no proxy from HTTP(S)_PROXY (through which the connection
    # would neither be pinned nor keep its TLS server name), while SSL_CERT_FILE still counts.
    with (
        httpx.Client(transport=httpx.HTTPTransport(verify=verify), timeout=timeout) as client,
        client.stream(
            "POST",
            pinned.url,
            content=content,
            headers={**headers, "Host": pinned.host},
            extensions={"sni_hostname": pinned.server_name},
        ) as response,
    ):
        return response.status_code
