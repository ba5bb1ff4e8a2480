"""Who may use the runtime's own surface (``/__edge/...``) and the streams, and what start-up says.

The rules (SPEC §5, §9; docs/security.md):

- **Without EDGE_TOKEN** the runtime endpoints answer only clients on this machine: the
  connection comes from a loopback address (127.0.0.0/8, ::1, ::ffff:127.x). Others get 401
  with a body that says how to allow them (set EDGE_TOKEN). A loopback request that a reverse
  proxy forwarded (``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``) counts as remote. A
  browser on this machine cannot be used against them by another site either: a cross-site
  request (``Sec-Fetch-Site`` other than ``same-origin``/``none``, or an ``Origin`` that is not
  the ``Host``) gets 403.
- **With EDGE_TOKEN** they answer anyone, this machine included, who sends
  ``Authorization: Bearer <token>`` (the scheme in any case, RFC 7235 §2.1). That is the one
  form: no other header, no query parameter (URLs end up in logs and browser history).
- **The Host header** must name this machine: ``localhost`` (and ``*.localhost``), a loopback
  address, this machine's hostname (also as ``<hostname>.local``), one of its addresses, or a
  name in EDGE_ALLOWED_HOSTS; else 421. That stops a DNS-rebinding page in a LAN browser, whose
  requests carry the attacker's name.
- ``GET /__edge/health`` answers ``{"status": "ok"}`` to anyone refused; its details need access.
- **Streams** without ``canAccess`` are readable by anyone unless EDGE_STREAMS_REQUIRE_TOKEN=1;
  then a join needs EDGE_TOKEN (subprotocols ``["Authorization", token]`` or ``?authToken=``).

:meth:`AccessPolicy.check` is a function of (client address, headers) and what the policy
worked out from the settings at start: a few string operations and one SHA-256 per request,
run only for ``/__edge/`` paths. The token is compared as SHA-256 digests with
``hmac.compare_digest``, so the time taken says nothing about the token, its length included.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from .responses import JSON, error_response

__all__ = ["AccessPolicy", "client_ip", "is_loopback", "host_name", "local_addresses", "startup_lines",
           "HEALTH", "TOKEN_FORM"]

HEALTH = "/__edge/health"
#: The one way to send the token to the runtime endpoints; quoted in every 401.
TOKEN_FORM = "Authorization: Bearer <token>"
#: At most this often (seconds) the machine's addresses are read again when a request names an
#: address not seen at start (DHCP may give one after edge started).
RESCAN_INTERVAL = 5.0
#: Host headers remembered as naming this machine (AccessPolicy._remember).
MAX_KNOWN_HOSTS = 32
#: Tokens shorter than this get a start-up warning: anyone on the network may guess.
SHORT_TOKEN = 16

_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "127.0.0.1", "::1")
_SAME_SITE = ("same-origin", "none")  # Sec-Fetch-Site values of requests no other site made
#: Headers a reverse proxy adds: a loopback connection that carries one speaks for another client.
_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
_REMOTE = ("the runtime endpoints (/__edge/...) answer only this machine while EDGE_TOKEN is not set; "
           "to allow other machines, start edge with EDGE_TOKEN set to a long random string "
           f"(openssl rand -hex 16) and send '{TOKEN_FORM}'")


class AccessPolicy:
    """What the settings allow, worked out once at start; ``check`` runs per request.

    Args:
        settings: reads ``token``, ``allowed_hosts``, ``streams_require_token``, ``host``.
        hostname: this machine's name (default ``socket.gethostname()``); tests pass one.
        addresses: ``fn() -> this machine's addresses`` (default :func:`local_addresses`), called at
            start and again, at most every RESCAN_INTERVAL seconds, when a Host names an address
            not seen yet (DHCP may hand one out after edge started).
        clock: monotonic seconds, for that rescan.
    """

    def __init__(self, settings, *, hostname: str | None = None,
                 addresses: Callable[[], Iterable[str]] | None = None, clock=time.monotonic):
        token = settings.token or None
        self.token_set = token is not None
        self._digest = _sha256(token) if token else b""
        self.streams_require_token = settings.streams_require_token
        allowed = tuple(name.strip().lower().rstrip(".") for name in settings.allowed_hosts)
        self.any_host = "*" in allowed
        self._suffixes = tuple(name for name in allowed if name.startswith(".") and len(name) > 1)
        self.hostname = (socket.gethostname() if hostname is None else hostname).lower().rstrip(".")
        names = {*_LOOPBACK_NAMES, *(n for n in allowed if n and not n.startswith(".") and n != "*")}
        if self.hostname:
            names |= {self.hostname, f"{self.hostname}.local"}
        bind = _bare(settings.host or "")
        if bind and bind not in ("0.0.0.0", "::"):
            names.add(_normal_ip(bind) or bind)
        self._fixed = frozenset(names)
        #: Host headers seen that name this machine by a name that cannot change (_remember).
        self._known_hosts: set[str] = set()
        self._clock = clock
        self._read_addresses = local_addresses if addresses is None else addresses
        self._next_scan = clock() + RESCAN_INTERVAL
        self._scan()

    # -- per request ------------------------------------------------------------------------

    def check(self, method: str, path: str, client: str, headers) -> tuple | None:
        """None when the request may go on; else the response ``(status, headers, body)``.

        ``client`` is the peer as Granian's scope gives it (``"ip:port"``, ``"[v6]:port"``);
        ``headers`` has ``get(lower-case name)``.
        """
        refusal = self.refusal(client, headers)
        if refusal is not None and path == HEALTH and method in ("GET", "HEAD"):
            return 200, [("content-type", JSON), ("cache-control", "no-store")], b'{"status":"ok"}'
        return refusal

    def host_refusal(self, headers) -> tuple | None:
        """The 421 for a Host that names no name of this machine, the 400 for more than one
        Host (None: the Host is fine)."""
        host = headers.get("host")
        if host is None:
            return None
        if len(headers.get_all("host")) > 1:  # which one would a proxy in front have read?
            return error_response(400, detail=_TWO_HOSTS)
        if not self.host_allowed(host):
            return self.misdirected(host)
        return None

    def refusal(self, client: str, headers) -> tuple | None:
        misdirected = self.host_refusal(headers)
        if misdirected is not None:
            return misdirected
        if self.token_set:
            given = bearer(headers.get("authorization"))
            if given is None:
                hint = (" (x-edge-token is not read)" if headers.get("x-edge-token") is not None else "")
                return _unauthorized(f"this endpoint needs the token in EDGE_TOKEN: send '{TOKEN_FORM}'{hint}")
            if not self.token_matches(given):
                return _unauthorized(f"the token sent does not match EDGE_TOKEN; send '{TOKEN_FORM}' "
                                     "with the token the server was started with")
            return None
        if not is_loopback(client_ip(client)):
            return _unauthorized(_REMOTE)
        proxied = _forwarded(headers)
        if proxied is not None:
            return _unauthorized(f"this request came through a proxy ({proxied}), so its client may be anywhere; "
                                 + _REMOTE)
        crossing = _cross_site(headers)
        if crossing is not None:
            return error_response(
                403, detail=f"a browser request made by another site ({crossing}) cannot use the runtime "
                            "endpoints; open them from this server's own pages, or set EDGE_TOKEN and send "
                            f"'{TOKEN_FORM}'")
        return None

    def token_matches(self, given: str | None) -> bool:
        """Constant-time comparison with EDGE_TOKEN (False when none is set or none given)."""
        if not self.token_set or given is None:
            return False
        return hmac.compare_digest(_sha256(given), self._digest)

    def host_allowed(self, host: str) -> bool:
        if self.any_host or host in self._known_hosts:
            return True
        name = host_name(host)
        if name in self._fixed or name.endswith(".localhost") or any(
                name.endswith(suffix) or name == suffix[1:] for suffix in self._suffixes):
            self._remember(host)
            return True
        if name in self._names:  # an address of this machine now (DHCP may take it back)
            return True
        ip = _normal_ip(name)
        if ip is None:
            return False
        if is_loopback(ip):
            self._remember(host)
            return True
        if self._clock() >= self._next_scan:
            self._next_scan = self._clock() + RESCAN_INTERVAL
            self._scan()
        return ip in self.addresses

    def _remember(self, host: str) -> None:
        """Keep a Host header that names this machine (the next request's check is one set
        lookup). Anyone may send any Host (``x1.localhost``, ``x2.localhost``, ...): when
        the set is full it starts again, so such a flood costs the memo, never memory."""
        known = self._known_hosts
        if len(known) >= MAX_KNOWN_HOSTS:
            known.clear()
        known.add(host)

    def _scan(self) -> None:
        self.addresses = frozenset(filter(None, map(_normal_ip, self._read_addresses())))
        self._names = self._fixed | self.addresses

    def misdirected(self, host: str):
        name = host_name(host)
        known = ", ".join(x for x in ("localhost", self.hostname, f"{self.hostname}.local") if x)
        return error_response(
            421, error="Misdirected Request",
            detail=f"Host {host!r} is not a name or address of this machine; the runtime endpoints answer "
                   f"requests addressed to {known} or one of its addresses. If {name!r} does reach this "
                   "machine (a DNS name, a port forward), add it to EDGE_ALLOWED_HOSTS")

    # -- streams ------------------------------------------------------------------------------

    def stream_refusal(self, token_ok: bool, sent: bool) -> str | None:
        """Why a join to a stream without canAccess is refused (None: it is not).

        ``token_ok``: the client's token matched (see :meth:`token_matches`); ``sent``: it sent one.
        """
        if not self.streams_require_token or token_ok:
            return None
        if sent:
            return "the token sent does not match EDGE_TOKEN"
        return ("this stream needs the token (EDGE_STREAMS_REQUIRE_TOKEN=1): connect with the subprotocols "
                '["Authorization", <token>] or with ?authToken=<token>')


# -- pieces (pure) -------------------------------------------------------------------------------

_TWO_HOSTS = ("the request has more than one Host header; HTTP/1.1 allows exactly one (RFC 9112, section 3.2), "
              "and the runtime endpoints answer only a request that names this machine once")


def bearer(value: str | None) -> str | None:
    """The token of ``Bearer <token>`` (scheme in any case), else None."""
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = rest.strip()
    return token or None


def client_ip(client: str) -> str:
    """``"[::1]:5000"`` -> ``"::1"``; ``"10.0.0.2:5000"`` -> ``"10.0.0.2"``; ``"::1:5000"`` (ASGI) -> ``"::1"``."""
    if client.startswith("["):
        return client[1:client.find("]")]
    address, sep, port = client.rpartition(":")
    return address if sep and port.isdigit() else client


def is_loopback(ip: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x; False for anything else ("" included)."""
    if ip.startswith(("127.", "::ffff:127.")) or ip == "::1":
        return True
    if ":" not in ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


#: A Host header: a name or a bracketed address, then at most a port of digits.
_HOST = re.compile(r"(\[[^\[\]]*\]|[^:\[\]]*)(?::\d{0,5})?")


def host_name(host: str) -> str:
    """The name or address of a Host header, lower case, without port, brackets or final dot;
    "" for what is no ``host[:port]`` (``localhost:1@evil.com``), which no name matches."""
    host = host.strip().lower()
    if host.count(":") > 1 and not host.startswith("["):
        return host.rstrip(".")  # an IPv6 literal without its brackets
    shape = _HOST.fullmatch(host)
    if shape is None:
        return ""
    name = shape.group(1)
    return (name[1:-1] if name.startswith("[") else name).rstrip(".")


def _bare(host: str) -> str:
    return host.strip().strip("[]").lower()


def _normal_ip(text: str) -> str | None:
    """The canonical text of an IP address (IPv4-mapped v6 as IPv4), or None if not one."""
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def _unauthorized(detail: str):
    status, headers, body = error_response(401, detail=detail)
    headers.append(("www-authenticate", 'Bearer realm="edge"'))
    return status, headers, body


def _forwarded(headers) -> str | None:
    for name in _PROXY_HEADERS:
        if headers.get(name) is not None:
            return name
    return None


def _cross_site(headers) -> str | None:
    """What shows that another site made this browser request, or None."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return None if site.lower() in _SAME_SITE else f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin")
    if origin is None:
        return None
    host = (headers.get("host") or "").lower()
    if origin.lower().partition("://")[2] != host:
        return f"Origin: {origin}"
    return None


def local_addresses(proc: Path = Path("/proc/self/net")) -> set[str]:
    """This machine's addresses: IPv4 from ``fib_trie`` (``/32 host LOCAL``), IPv6 from ``if_inet6``.

    ``/proc/self/net`` rather than ``/proc/net``: the unit's ``ProcSubset=pid`` hides the latter.
    Elsewhere than Linux (no /proc), what the hostname resolves to.
    """
    found: set[str] = set()
    try:
        last = None
        for line in (proc / "fib_trie").read_text().splitlines():
            text = line.strip()
            if text.startswith("|-- "):
                last = text[4:]
            elif text == "/32 host LOCAL" and last:
                found.add(last)
    except OSError:
        pass
    try:
        for line in (proc / "if_inet6").read_text().splitlines():
            raw = line.split()[0] if line.strip() else ""
            if len(raw) == 32:
                found.add(str(ipaddress.IPv6Address(bytes.fromhex(raw))))
    except (OSError, ValueError):
        pass
    if not found:
        try:
            found = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
        except OSError:
            pass
    return {ip for ip in map(_normal_ip, found) if ip}


# -- what start-up says -------------------------------------------------------------------------

def startup_lines(settings, port: int, streams: Iterable = ()) -> list[tuple[str, str]]:
    """``[(level, line)]`` for the start-up log: who can reach what, in one line, plus warnings.

    ``streams`` are the stream definitions (``name``, ``can_access``).
    """
    host = settings.host or "0.0.0.0"
    shown = f"[{host}]" if ":" in host else host
    local_only = is_loopback(_bare(host)) or _bare(host) == "localhost"
    parts = [f"app routes on {shown}:{port}" + (" (this machine only)" if local_only else "")]
    if settings.token:
        parts.append("runtime endpoints: clients that send EDGE_TOKEN")
    elif local_only:
        parts.append("runtime endpoints: this machine only")
    else:
        parts.append("runtime endpoints: this machine only (set EDGE_TOKEN to allow others)")
    require = settings.streams_require_token
    public = sorted(s.name for s in streams if s.can_access is None)
    guarded = sorted(s.name for s in streams if s.can_access is not None)
    if public and require:
        parts.append(f"streams {', '.join(public)}: clients that send EDGE_TOKEN")
    elif public:
        parts.append(f"streams anyone can read: {', '.join(public)} (EDGE_STREAMS_REQUIRE_TOKEN=1 to require the token)")
    if guarded:
        parts.append(f"streams checked by canAccess: {', '.join(guarded)}")
    lines = [("info", "; ".join(parts))]
    token = settings.token or ""
    if token and len(token) < SHORT_TOKEN:
        lines.append(("warn", f"EDGE_TOKEN has {len(token)} characters; anyone who reaches port {port} may try "
                              f"to guess it: use {SHORT_TOKEN} or more random characters (openssl rand -hex 16)"))
    return lines
