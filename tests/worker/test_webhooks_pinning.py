"""The sender connects to the address it checked: a resolver answering differently the second time
cannot slip a private address in, and the name stays in the Host header and the TLS server name."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
import trustme
from standardwebhooks import Webhook

from store.settings import Settings
from store.webhook_secrets import new_secret
from store.webhooks import Attempt
from tests.webhook_receiver import Receiver
from worker.webhooks import post

NAME = "hooks.rebinding.test"  # made up: only the resolver below knows it
PUBLIC = "93.184.215.14"  # a global address, which no test machine serves
SECRET = new_secret()


class ScriptedResolver:
    """Answers NAME with each of `answers` in turn (a rebinding DNS server), then not at all; any other
    name is looked up as usual (httpx's connect to an address literal goes through getaddrinfo too)."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked = 0
        self.real = socket.getaddrinfo

    def __call__(self, host, port, *args, **kwargs):
        if host != NAME:
            return self.real(host, port, *args, **kwargs)
        self.asked += 1
        if not self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (self.answers.pop(0), port))]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def attempt(url: str) -> Attempt:
    payload = {"event": "job.succeeded", "job": {"id": "abc"}}
    return Attempt("d" * 32, 1, url, "job.succeeded", payload, (SECRET,))


def test_a_rebinding_resolver_cannot_send_the_delivery_to_a_private_address(monkeypatch, receiver):
    resolver = ScriptedResolver(PUBLIC, "127.0.0.1")  # checked: public; asked again: this machine
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    connected = []
    real_connect = socket.create_connection

    def connect(address, *args, **kwargs):
        # No test machine can serve a public address: record where the connection went and refuse it,
        # as an unreachable receiver would.
        connected.append(address[0])
        if address[0] == PUBLIC:
            raise ConnectionRefusedError(111, "Connection refused")
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    url = receiver.url(host=NAME)
    outcome = post(attempt(url), Settings(webhook_allow_private=False, webhook_timeout_s=5))

    assert outcome.status_code is None and "ConnectError" in outcome.error
    assert connected == [PUBLIC]  # the checked address, and only it
    assert resolver.asked == 1
    assert receiver.received(url) == []  # the private address never heard of it


def test_a_name_resolving_into_the_private_network_is_refused_before_connecting(monkeypatch, receiver):
    monkeypatch.setattr(socket, "getaddrinfo", ScriptedResolver("127.0.0.1", PUBLIC))
    url = receiver.url(host=NAME)
    outcome = post(attempt(url), Settings(webhook_allow_private=False, webhook_timeout_s=5))
    assert outcome.status_code is None and "is not a public address" in outcome.error
    assert receiver.received(url) == []


def test_allowed_private_addresses_are_pinned_too_and_keep_the_host_header(monkeypatch, receiver):
    # The name resolves once: had httpx looked it up again to connect, it would have found nothing.
    resolver = ScriptedResolver("127.0.0.1")
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    url = receiver.url(host=NAME)
    outcome = post(attempt(url), Settings(webhook_allow_private=True, webhook_timeout_s=5))

    assert (outcome.status_code, outcome.error) == (200, None)
    assert resolver.asked == 1
    [received] = receiver.received(url)
    assert received.headers["Host"] == f"{NAME}:{receiver.port}"
    assert Webhook(SECRET).verify(received.body, received.headers) == attempt(url).payload


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


def https_receiver(authority: trustme.CA, name: str) -> Receiver:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(tls)  # a certificate for the name only, not for 127.0.0.1
    return Receiver(tls)


def trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


def test_a_pinned_https_connection_verifies_the_certificate_against_the_name(monkeypatch, authority):
    receiver = https_receiver(authority, NAME)
    try:
        monkeypatch.setattr(socket, "getaddrinfo", ScriptedResolver("127.0.0.1"))
        url = receiver.url(host=NAME)
        settings = Settings(webhook_allow_private=True, webhook_timeout_s=5)
        outcome = post(attempt(url), settings, verify=trusting(authority))

        assert (outcome.status_code, outcome.error) == (200, None)
        assert receiver.server_names == [NAME]  # SNI: the name, not the address connected to
        [received] = receiver.received(url)
        assert received.headers["Host"] == f"{NAME}:{receiver.port}"
        assert Webhook(SECRET).verify(received.body, received.headers) == attempt(url).payload
    finally:
        receiver.stop()


def test_a_certificate_for_another_name_is_refused(monkeypatch, authority):
    receiver = https_receiver(authority, "someone-else.test")
    try:
        monkeypatch.setattr(socket, "getaddrinfo", ScriptedResolver("127.0.0.1"))
        url = receiver.url(host=NAME)
        settings = Settings(webhook_allow_private=True, webhook_timeout_s=5)
        outcome = post(attempt(url), settings, verify=trusting(authority))

        assert outcome.status_code is None and "CERTIFICATE_VERIFY_FAILED" in outcome.error
        assert receiver.received(url) == []
    finally:
        receiver.stop()
