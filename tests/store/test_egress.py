"""Webhook egress: a notify_url may not reach this machine or the private network unless allowed."""

from __future__ import annotations

import pytest

from store.egress import refusal

PRIVATE = [
    "http://127.0.0.1:6379/",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://172.16.5.5/hook",
    "http://169.254.169.254/latest/meta-data/",  # a cloud's metadata service
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://0.0.0.0:8000/",
    "http://[::1]:8000/",
    "http://[fd00::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4 in IPv6 clothing
    "http://224.0.0.1/hook",  # multicast
    "http://localhost:8000/hook",
    "http://api.localhost/hook",
    "http://LOCALHOST./hook",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_addresses_are_refused_without_a_lookup(url):
    reason = refusal(url, allow_private=False, resolve=False)
    assert reason is not None and "TRAINYARD_WEBHOOK_ALLOW_PRIVATE" in reason


@pytest.mark.parametrize("url", ["https://8.8.8.8/hook", "http://[2606:4700::1111]/hook"])
def test_public_addresses_pass(url):
    assert refusal(url, allow_private=False, resolve=True) is None


@pytest.mark.parametrize("url", PRIVATE)
def test_the_setting_allows_them(url):
    assert refusal(url, allow_private=True, resolve=True) is None


def test_a_name_is_judged_by_the_address_it_resolves_to(private_hostname):
    url = f"http://{private_hostname}:8080/hook"
    assert refusal(url, allow_private=False, resolve=False) is None  # the API's view: no lookup
    assert "is not a public address" in refusal(url, allow_private=False, resolve=True)
