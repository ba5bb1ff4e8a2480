"""edge/server/access.py in-process: who may use /__edge/..., the Host check, the start-up line.

The end-to-end side (a real server, clients from another network namespace) is
tests/test_security.py.
"""

from __future__ import annotations

import json

import pytest

from edge.errors import ConfigError
from edge.server.access import (AccessPolicy, bearer, client_ip, host_name, is_loopback, local_addresses,
                                startup_lines)
from edge.settings import Settings

LAN = ["192.168.1.23", "fd00::23"]
REMOTE_401 = ("the runtime endpoints (/__edge/...) answer only this machine while EDGE_TOKEN is not set; "
              "to allow other machines, start edge with EDGE_TOKEN set to a long random string "
              "(openssl rand -hex 16) and send 'Authorization: Bearer <token>'")
MISSING_TOKEN = "this endpoint needs the token in EDGE_TOKEN: send 'Authorization: Bearer <token>'"
WRONG_TOKEN = ("the token sent does not match EDGE_TOKEN; send 'Authorization: Bearer <token>' "
               "with the token the server was started with")


def policy(env=None, *, addresses=lambda: LAN, **kw) -> AccessPolicy:
    return AccessPolicy(Settings.from_env(env or {}), hostname="raspberrypi", addresses=addresses, **kw)


def answer(result):
    status, headers, body = result
    return status, dict(headers), json.loads(body)


class Headers(dict):
    """Request headers as the server hands them over: ``get`` (the first value) and ``get_all``;
    a value given as a list is a header sent more than once."""

    def get(self, name, default=None):
        value = super().get(name, default)
        return value[0] if isinstance(value, list) else value

    def get_all(self, name):
        value = super().get(name)
        return [] if value is None else value if isinstance(value, list) else [value]


def get(p, client, headers=None, path="/__edge/state"):
    return p.check("GET", path, client, Headers({"host": "127.0.0.1:3000", **(headers or {})}))


# -- without EDGE_TOKEN: this machine only --------------------------------------------------------

@pytest.mark.parametrize("client", ["127.0.0.1:40000", "127.5.6.7:1", "[::1]:40000",
                                    "[::ffff:127.0.0.1]:40000", "::1:40000", "::ffff:127.0.0.1:5"])
def test_loopback_clients_are_served_without_a_token(client):
    assert get(policy(), client) is None


@pytest.mark.parametrize("client", ["192.168.1.50:40000", "[::ffff:192.168.1.50]:40000", "[fd00::50]:1",
                                    "192.168.1.23:5000", "", "garbage"])
def test_other_clients_get_401_saying_how_to_allow_them(client):
    status, headers, body = answer(get(policy(), client))
    assert status == 401
    assert body == {"error": "Unauthorized", "detail": REMOTE_401}
    assert headers["www-authenticate"] == 'Bearer realm="edge"'


def test_a_token_from_another_machine_does_not_help_while_none_is_set():
    status, _, body = answer(get(policy(), "192.168.1.50:1", {"authorization": "Bearer anything"}))
    assert (status, body["detail"]) == (401, REMOTE_401)


@pytest.mark.parametrize("header", ["forwarded", "x-forwarded-for", "x-real-ip"])
def test_a_request_a_proxy_on_this_machine_forwarded_counts_as_remote(header):
    status, _, body = answer(get(policy(), "127.0.0.1:1", {header: "192.168.1.50"}))
    assert (status, body["detail"]) == (
        401, f"this request came through a proxy ({header}), so its client may be anywhere; " + REMOTE_401)
    token = policy({"EDGE_TOKEN": "a-long-random-token-0123"})
    assert get(token, "127.0.0.1:1", {header: "192.168.1.50", "authorization": "Bearer a-long-random-token-0123"}) is None


def test_health_is_minimal_for_strangers_and_full_for_this_machine():
    p = policy()
    status, headers, body = answer(p.check("GET", "/__edge/health", "192.168.1.50:1", Headers({"host": "192.168.1.23:3000"})))
    assert (status, body) == (200, {"status": "ok"})
    assert headers["cache-control"] == "no-store"
    assert p.check("GET", "/__edge/health", "127.0.0.1:1", Headers({"host": "localhost:3000"})) is None
    # only GET/HEAD of health: a POST there is refused like any other endpoint
    assert answer(p.check("POST", "/__edge/health", "192.168.1.50:1", Headers()))[0] == 401


# -- with EDGE_TOKEN: whoever sends it, this machine too ------------------------------------------

@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(scheme):
    p = policy({"EDGE_TOKEN": "a-long-random-token-0123"})
    assert get(p, "192.168.1.50:1", {"authorization": f"{scheme} a-long-random-token-0123"}) is None
    assert get(p, "192.168.1.50:1", {"authorization": f"  {scheme}   a-long-random-token-0123  "}) is None


def test_with_a_token_everyone_needs_it_loopback_included():
    p = policy({"EDGE_TOKEN": "a-long-random-token-0123"})
    for client in ("127.0.0.1:1", "192.168.1.50:1"):
        status, headers, body = answer(get(p, client))
        assert (status, body) == (401, {"error": "Unauthorized", "detail": MISSING_TOKEN})
        assert headers["www-authenticate"] == 'Bearer realm="edge"'
        assert answer(get(p, client, {"authorization": "Bearer wrong"}))[2]["detail"] == WRONG_TOKEN


def test_only_the_documented_form_is_read():
    p = policy({"EDGE_TOKEN": "a-long-random-token-0123"})
    status, _, body = answer(get(p, "127.0.0.1:1", {"x-edge-token": "a-long-random-token-0123"}))
    assert (status, body["detail"]) == (401, MISSING_TOKEN + " (x-edge-token is not read)")
    for value in ("Basic a-long-random-token-0123", "a-long-random-token-0123", "Bearer", "Bearer "):
        assert answer(get(p, "127.0.0.1:1", {"authorization": value}))[0] == 401, value


def test_token_comparison_is_exact():
    p = policy({"EDGE_TOKEN": "s3cret-s3cret-s3cret"})
    assert p.token_matches("s3cret-s3cret-s3cret")
    for other in ("s3cret-s3cret-s3cre", "s3cret-s3cret-s3crett", "S3CRET-S3CRET-S3CRET", "", None):
        assert not p.token_matches(other), other
    assert not policy().token_matches("")  # no token set: nothing matches


def test_bearer():
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer   abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer") is None
    assert bearer(None) is None


# -- the Host check (DNS rebinding) ---------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "localhost:3000", "LOCALHOST.:3000", "127.0.0.1:3000",
                                  "127.9.9.9", "[::1]:3000", "raspberrypi", "RaspberryPi.local:3000",
                                  "192.168.1.23:3000", "[fd00::23]:3000", "app.localhost:3000"])
def test_names_and_addresses_of_this_machine_pass_the_host_check(host):
    assert get(policy(), "127.0.0.1:1", {"host": host}) is None


TWO_HOSTS = ("the request has more than one Host header; HTTP/1.1 allows exactly one (RFC 9112, section 3.2), "
             "and the runtime endpoints answer only a request that names this machine once")


@pytest.mark.parametrize("hosts", [["127.0.0.1:3000", "rebind.attacker.example"],
                                   ["rebind.attacker.example", "127.0.0.1:3000"], ["localhost", "localhost"]])
def test_more_than_one_host_header_is_a_400_whichever_comes_first(hosts):
    # Before: the first one was checked, and a proxy in front may read the last.
    assert answer(get(policy(), "127.0.0.1:1", {"host": hosts})) == (
        400, {"content-type": "application/json"}, {"error": "Bad Request", "detail": TWO_HOSTS})
    token = policy({"EDGE_TOKEN": "s" * 32})
    assert answer(get(token, "192.168.1.50:1", {"host": hosts, "authorization": "Bearer " + "s" * 32}))[0] == 400


def test_a_foreign_host_gets_421_even_from_loopback_and_with_the_token():
    for p, headers in ((policy(), {}),
                       (policy({"EDGE_TOKEN": "a-long-random-token-0123"}), {"authorization": "Bearer a-long-random-token-0123"})):
        status, _, body = answer(get(p, "127.0.0.1:1", {"host": "rebind.attacker.example:3000", **headers}))
        assert status == 421
        assert body == {"error": "Misdirected Request", "detail": (
            "Host 'rebind.attacker.example:3000' is not a name or address of this machine; the runtime endpoints "
            "answer requests addressed to localhost, raspberrypi, raspberrypi.local or one of its addresses. "
            "If 'rebind.attacker.example' does reach this machine (a DNS name, a port forward), add it to "
            "EDGE_ALLOWED_HOSTS")}
    assert answer(get(policy(), "127.0.0.1:1", {"host": "10.9.9.9:3000"}))[0] == 421  # not ours


def test_health_stays_minimal_for_a_foreign_host():
    result = policy().check("GET", "/__edge/health", "127.0.0.1:1", Headers({"host": "rebind.attacker.example"}))
    status, _, body = answer(result)
    assert (status, body) == (200, {"status": "ok"})


def test_allowed_hosts_adds_names_suffixes_or_turns_the_check_off():
    p = policy({"EDGE_ALLOWED_HOSTS": "edge.example.com, .lan"})
    for host in ("edge.example.com:3000", "EDGE.example.com", "pi.lan", "kitchen.pi.lan:3000", "lan"):
        assert get(p, "127.0.0.1:1", {"host": host}) is None, host
    for host in ("example.com", "edge.example.com.evil", "plan"):
        assert answer(get(p, "127.0.0.1:1", {"host": host}))[0] == 421, host
    assert get(policy({"EDGE_ALLOWED_HOSTS": "*"}), "127.0.0.1:1", {"host": "anything.example"}) is None


def test_a_specific_bind_address_is_one_of_ours():
    p = policy({"EDGE_HOST": "10.1.2.3"}, addresses=lambda: [])
    assert get(p, "127.0.0.1:1", {"host": "10.1.2.3:3000"}) is None


def test_an_address_added_after_start_is_found_again_at_most_every_5_seconds():
    now = [100.0]
    known = ["192.168.1.23"]
    scans = []

    def addresses():
        scans.append(now[0])
        return list(known)

    p = policy(addresses=addresses, clock=lambda: now[0])
    known.append("192.168.1.99")  # DHCP, after start
    assert answer(get(p, "127.0.0.1:1", {"host": "192.168.1.99"}))[0] == 421
    now[0] += 5
    assert get(p, "127.0.0.1:1", {"host": "192.168.1.99"}) is None
    assert answer(get(p, "127.0.0.1:1", {"host": "10.0.0.1"}))[0] == 421
    assert answer(get(p, "127.0.0.1:1", {"host": "10.0.0.1"}))[0] == 421
    assert scans == [100.0, 105.0]  # names are never a reason to read the addresses again


def test_an_address_the_machine_lost_is_refused_once_the_addresses_are_read_again():
    """Host headers that name the machine are remembered, but not its DHCP addresses."""
    now = [100.0]
    known = ["192.168.1.23"]
    p = policy(addresses=lambda: list(known), clock=lambda: now[0])
    for _ in range(2):
        assert get(p, "127.0.0.1:1", {"host": "192.168.1.23:3000"}) is None
        assert get(p, "127.0.0.1:1", {"host": "raspberrypi.local:3000"}) is None
    known[:] = ["192.168.1.50"]  # the lease moved
    now[0] += 5
    assert get(p, "127.0.0.1:1", {"host": "192.168.1.50"}) is None  # a new one: they are read again
    assert answer(get(p, "127.0.0.1:1", {"host": "192.168.1.23:3000"}))[0] == 421
    assert get(p, "127.0.0.1:1", {"host": "raspberrypi.local:3000"}) is None


def test_the_hosts_remembered_stay_few_whatever_hosts_are_sent():
    p = policy()
    for i in range(1000):
        assert get(p, "10.0.0.9:1", {"host": f"x{i}.localhost"})[0] == 401  # (not from this machine)
    assert len(p._known_hosts) <= 32
    assert get(p, "127.0.0.1:1", Headers({"host": "localhost:3000"})) is None
    assert "localhost:3000" in p._known_hosts  # the memo still works after the flood


def test_a_request_without_host_is_not_refused_for_it():
    assert policy().check("GET", "/__edge/state", "127.0.0.1:1", Headers()) is None


# -- browsers on this machine, driven by another site --------------------------------------------

@pytest.mark.parametrize("headers", [{"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"},
                                     {"origin": "https://evil.example"}, {"origin": "null"},
                                     {"origin": "http://127.0.0.1:8080"}])
def test_cross_site_browser_requests_from_loopback_get_403(headers):
    status, _, body = answer(get(policy(), "127.0.0.1:1", headers))
    shown = f"Sec-Fetch-Site: {headers['sec-fetch-site']}" if "sec-fetch-site" in headers else f"Origin: {headers['origin']}"
    assert (status, body) == (403, {"error": "Forbidden", "detail": (
        f"a browser request made by another site ({shown}) cannot use the runtime endpoints; open them from "
        "this server's own pages, or set EDGE_TOKEN and send 'Authorization: Bearer <token>'")})


@pytest.mark.parametrize("headers", [{"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "none"},
                                     {"origin": "http://127.0.0.1:3000"},
                                     {"sec-fetch-site": "same-origin", "origin": "http://127.0.0.1:3000"}])
def test_the_servers_own_pages_and_typed_urls_are_served(headers):
    assert get(policy(), "127.0.0.1:1", headers) is None


# -- pieces ---------------------------------------------------------------------------------------

def test_client_ip_and_loopback():
    assert client_ip("[::1]:5000") == "::1"
    assert client_ip("10.0.0.2:5000") == "10.0.0.2"
    assert client_ip("::ffff:10.0.0.2:5000") == "::ffff:10.0.0.2"
    assert client_ip("") == ""
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.2")
    assert not is_loopback("10.0.0.2") and not is_loopback("::ffff:10.0.0.2") and not is_loopback("")
    assert not is_loopback("fe80::1")


def test_host_name():
    assert host_name("Pi.Local:3000") == "pi.local"
    assert host_name("[FD00::1]:3000") == "fd00::1"
    assert host_name("localhost.") == "localhost"
    assert host_name("10.0.0.1") == "10.0.0.1"
    # what is no host[:port] names nothing (localhost:43002@evil.com passed as localhost)
    assert [host_name(h) for h in ("localhost:43002@evil.com", "localhost:evil", "[::1]evil")] == ["", "", ""]


@pytest.mark.parametrize("host", ["localhost:43002@evil.com", "localhost:evil", "[::1]evil.example"])
def test_a_host_header_that_only_starts_with_a_local_name_gets_421(host):
    assert answer(get(policy(), "127.0.0.1:1", {"host": host}))[0] == 421


def test_local_addresses_reads_the_kernels_tables(tmp_path):
    (tmp_path / "fib_trie").write_text(
        "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n"
        "     +-- 127.0.0.0/8 2 0 2\n           |-- 127.0.0.0\n              /8 host LOCAL\n"
        "           |-- 127.0.0.1\n              /32 host LOCAL\n"
        "        |-- 192.168.1.255\n           /32 link BROADCAST\n"
        "           |-- 192.168.1.23\n              /32 host LOCAL\n")
    (tmp_path / "if_inet6").write_text(
        "fd000000000000000000000000000023 04 40 00 82     eth0\n"
        "00000000000000000000000000000001 01 80 10 80       lo\n")
    assert local_addresses(tmp_path) == {"127.0.0.1", "192.168.1.23", "fd00::23", "::1"}
    assert "127.0.0.1" in local_addresses()  # this machine's own tables


# -- streams --------------------------------------------------------------------------------------

def test_streams_require_the_token_only_when_asked():
    assert policy().stream_refusal(False, False) is None
    p = policy({"EDGE_TOKEN": "a-long-random-token-0123", "EDGE_STREAMS_REQUIRE_TOKEN": "1"})
    assert p.stream_refusal(True, True) is None
    assert p.stream_refusal(False, True) == "the token sent does not match EDGE_TOKEN"
    assert p.stream_refusal(False, False) == (
        'this stream needs the token (EDGE_STREAMS_REQUIRE_TOKEN=1): connect with the subprotocols '
        '["Authorization", <token>] or with ?authToken=<token>')


def test_streams_require_token_needs_a_token():
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"EDGE_STREAMS_REQUIRE_TOKEN": "yes"})
    assert str(err.value) == ('EDGE_STREAMS_REQUIRE_TOKEN=1 needs EDGE_TOKEN: set EDGE_TOKEN to the token stream '
                              'clients must send (subprotocols ["Authorization", token] or ?authToken=)')
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"EDGE_STREAMS_REQUIRE_TOKEN": "maybe", "EDGE_TOKEN": "t"})
    assert str(err.value) == 'EDGE_STREAMS_REQUIRE_TOKEN: expected 1 or 0 (also true/false, yes/no, on/off), got "maybe"'
    assert Settings.from_env({"EDGE_STREAMS_REQUIRE_TOKEN": "off"}).streams_require_token is False
    assert Settings.from_env({"EDGE_ALLOWED_HOSTS": "a.lan, b.lan,"}).allowed_hosts == ("a.lan", "b.lan")


# -- the start-up line ----------------------------------------------------------------------------

class _Stream:
    def __init__(self, name, can_access=None):
        self.name = name
        self.can_access = can_access


def test_startup_says_who_can_reach_what():
    default = Settings.from_env({})
    assert startup_lines(default, 3000) == [
        ("info", "app routes on 0.0.0.0:3000; runtime endpoints: this machine only (set EDGE_TOKEN to allow others)")]
    assert startup_lines(Settings.from_env({"EDGE_HOST": "127.0.0.1"}), 3000) == [
        ("info", "app routes on 127.0.0.1:3000 (this machine only); runtime endpoints: this machine only")]
    token = Settings.from_env({"EDGE_TOKEN": "0123456789abcdef", "EDGE_HOST": "::"})
    assert startup_lines(token, 8080) == [
        ("info", "app routes on [::]:8080; runtime endpoints: clients that send EDGE_TOKEN")]


def test_startup_lists_the_streams_anyone_can_read():
    streams = [_Stream("todos"), _Stream("sensors"), _Stream("secret", can_access=lambda s, a: False)]
    assert startup_lines(Settings.from_env({}), 3000, streams) == [
        ("info", "app routes on 0.0.0.0:3000; runtime endpoints: this machine only (set EDGE_TOKEN to allow others); "
                 "streams anyone can read: sensors, todos (EDGE_STREAMS_REQUIRE_TOKEN=1 to require the token); "
                 "streams checked by canAccess: secret")]
    strict = Settings.from_env({"EDGE_TOKEN": "0123456789abcdef", "EDGE_STREAMS_REQUIRE_TOKEN": "1"})
    assert startup_lines(strict, 3000, streams[:2]) == [
        ("info", "app routes on 0.0.0.0:3000; runtime endpoints: clients that send EDGE_TOKEN; "
                 "streams sensors, todos: clients that send EDGE_TOKEN")]


def test_a_short_token_is_warned_about():
    assert startup_lines(Settings.from_env({"EDGE_TOKEN": "pi"}), 3000)[1] == (
        "warn", "EDGE_TOKEN has 2 characters; anyone who reaches port 3000 may try to guess it: use 16 or more "
                "random characters (openssl rand -hex 16)")
