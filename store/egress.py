"""Where webhooks may go: public addresses only, unless TRAINYARD_WEBHOOK_ALLOW_PRIVATE is set.

A job's notify_url is its tenant's choice, and the worker POSTs to it from inside the service's network.
Unchecked, a tenant could point it at the database, Redis, an admin port or a cloud metadata service
(169.254.169.254) and use the worker to reach them (server-side request forgery). The API refuses such a
URL when the job is submitted (422), and the worker checks again, resolving the name, before each
attempt: a name may resolve to another address by then.
"""

from __future__ import annotations

import ipaddress
import socket

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOW_HINT = "set TRAINYARD_WEBHOOK_ALLOW_PRIVATE=true for receivers inside your network"


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address.is_global and not address.is_multicast


def _addresses(host: str, port: int, resolve: bool) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    if not resolve:
        return []
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return []  # an unknown name: the POST fails with its own error
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def refusal(url: str, *, allow_private: bool, resolve: bool) -> str | None:
    """Why a webhook may not be sent to `url`, or None. `resolve`: look the host name up (the worker does;
    the API checks only addresses and `localhost`, so a submission never waits on DNS)."""
    if allow_private:
        return None
    parsed = httpx.URL(url)
    host = parsed.host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return f"{host} is this machine; {ALLOW_HINT}"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    for address in _addresses(host, port, resolve):
        if not _public(address):
            shown = host if host == str(address) else f"{host} ({address})"
            return f"{shown} is not a public address; {ALLOW_HINT}"
    return None
