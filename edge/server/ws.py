"""The stream WebSocket: Motia's stream protocol (SPEC §9) on the HTTP port.

Client -> server frames are ``{"type": "join"|"leave", "data": {"streamName", "groupId", "id"?,
"subscriptionId"}}``. They are handled on the asyncio side, one at a time and in order, because
Granian's socket calls can only be awaited there; a join reads the store and registers with the
:class:`~edge.streams.Hub` synchronously, so no change can slip between its ``sync`` and the
live events that follow. An async ``canAccess`` is awaited there too (user code runs on asyncio).

Server -> client frames are queued per socket by ``Client.push`` (called on the loop thread:
from the store's after-commit hooks, from handlers, from trio) and written by one asyncio task
per socket. The queue is bounded: a client that cannot
keep up is disconnected (close code 1008) the moment its queue would pass ``MAX_BUFFER``, and
nobody else waits for it.

A socket costs the server ~150 KiB (Granian's buffers) whether or not it subscribes, so one
that holds no subscription is closed after ``idle_timeout`` seconds (``EDGE_IDLE_TIMEOUT``,
counted from the upgrade and again from the leave of its last subscription), with an
``IDLE_TIMEOUT`` error event and a close frame (1008). One timer per socket, armed at the upgrade
and when a leave takes the last subscription (a timer that finds one does nothing): no work per
frame, and none on the send path.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
from urllib.parse import parse_qs

import msgspec

from .._boundary import cancel, cancelled_from_outside, describe
from .._json import JSONTooDeep
from .._json import decode as _decode
from ..streams import AuthContext, Streams, Subscription
from ..streams.store import MAX_KEY
from ..streams.sync import GroupSync

__all__ = ["StreamSockets", "MAX_FRAME", "MAX_SUBSCRIPTIONS", "MAX_BUFFER"]

#: Largest client frame handled (bytes); joins are ~200 bytes. Bigger frames get FRAME_TOO_LARGE.
MAX_FRAME = 64 * 1024
#: Subscriptions one socket may hold; a join beyond gets TOO_MANY_SUBSCRIPTIONS.
MAX_SUBSCRIPTIONS = 256
#: Threads that run sync ``canAccess`` checks (each socket's joins run one at a time).
ACCESS_THREADS = 4
#: Characters queued for one socket before it is disconnected as too slow. A single frame
#: may exceed it when the queue is empty, so the bound per socket is MAX_BUFFER plus the
#: largest frame; a group sync is sent in pieces of ``edge.streams.sync.PIECE`` (64 KiB), the
#: next only once the queue has drained.
MAX_BUFFER = 1 << 20
#: Seconds sockets get to finish after the close frames on shutdown; also how long an idle
#: socket's IDLE_TIMEOUT event may take to go out before it is closed without it.
CLOSE_GRACE = 1.0
#: Seconds a socket may hold no subscription (from the upgrade, or from its last leave) before it
#: is closed; the server passes ``settings.idle_timeout`` (EDGE_IDLE_TIMEOUT).
IDLE_TIMEOUT = 30.0

#: Close codes (RFC 6455).
GOING_AWAY, POLICY, TRY_LATER = 1001, 1008, 1013

_encode = msgspec.json.Encoder().encode


class _Bad(Exception):
    """A frame the protocol rejects: answered with an error event, the socket stays open."""

    def __init__(self, code: str, message: str, room: tuple | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.room = room


class Client:
    """One WebSocket: its subscriptions, its bounded send queue, and the protocol handling."""

    __slots__ = ("sockets", "proto", "auth", "subs", "rooms", "queue", "queued", "waiter",
                 "closed", "tasks", "peer", "token_ok", "syncs", "idle", "closing")

    def __init__(self, sockets: "StreamSockets", proto, auth: AuthContext | None, peer: str = ""):
        self.sockets = sockets
        self.proto = proto
        self.auth = auth
        self.peer = peer
        access = sockets.access
        #: The client sent EDGE_TOKEN (worked out once: streams without canAccess may need it).
        self.token_ok = access is not None and auth is not None and access.token_matches(auth.token)
        self.subs: dict[str, tuple] = {}  # subscriptionId -> room
        self.rooms: collections.Counter = collections.Counter()  # room -> subscriptions in it
        self.queue: collections.deque[str] = collections.deque()
        self.queued = 0
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.tasks: tuple = ()
        #: subscriptionId -> the rest of its group sync, sent when the queue has drained
        self.syncs: dict[str, GroupSync] = {}
        #: The timer that closes this socket if it holds no subscription when it fires.
        self.idle: asyncio.TimerHandle | None = None
        #: The close code to send once the queue is out (an idle socket's error event first).
        self.closing = 0

    # -- server -> client -----------------------------------------------------------------

    def push(self, frame: str) -> None:
        """Queue a frame; never blocks. Overflowing the queue disconnects this client."""
        if self.closed:
            return
        size = len(frame)
        if self.queue and self.queued + size > MAX_BUFFER:
            self.sockets.disconnected_slow += 1
            self.sockets.log("warn", f"stream client {self.peer or '?'} disconnected: it did not read "
                                     f"{self.queued} queued characters, and {size} more would pass "
                                     f"the limit of {MAX_BUFFER}")
            self.close(POLICY)
            return
        self.queue.append(frame)
        self.queued += size
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def write_loop(self, send) -> None:
        queue = self.queue
        loop = asyncio.get_running_loop()
        while not self.closed:
            while queue:
                frame = queue.popleft()
                self.queued -= len(frame)
                await send(frame)
            if self.closed:
                return
            if self.closing:
                self.close(self.closing)  # the IDLE_TIMEOUT event is out
                await loop.create_future()  # until close() cancels the loops: see Client.close
            if self.syncs:
                self._continue_sync()  # everything before it is out: the next piece of a sync
                continue
            self.waiter = loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None

    def _continue_sync(self) -> None:
        """Queue the next page of the oldest unfinished group sync as ``create`` events."""
        sub_id, sync = next(iter(self.syncs.items()))
        try:
            items = sync.next_items()
        except Exception as exc:  # the store failed: this sync stops, the socket goes on
            self.syncs.pop(sub_id, None)
            self.sockets.log("error", f"stream {sync.name!r} group {sync.group!r}: reading the rest of a "
                                      f"join's sync failed: {type(exc).__name__}: {exc}")
            self.error((sync.name, sync.group, None), "SYNC_FAILED",
                       "the rest of this group could not be read; join again")
            return
        if sync.done and self.syncs.get(sub_id) is sync:
            del self.syncs[sub_id]
        hub = self.sockets.streams.hub
        timestamp = hub.latest(sync.name, sync.group)
        for id, item in items:
            self.push(hub.frame(sync.name, sync.group, id, {"type": "create", "data": msgspec.Raw(item)}, timestamp))

    def close(self, code: int) -> None:
        """Leave every room, drop the queue, send a close frame, stop both loops."""
        if self.closed:
            return
        self.closed = True
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        self.sockets.forget(self)
        self.syncs.clear()
        self.queue.clear()
        self.queued = 0
        try:
            self.proto.close(code)  # ASGI: a task sends the frame; serve_client waits for it (finish)
        except Exception:  # already closed by the peer
            pass
        for task in self.tasks:  # (under ASGI the pending receive must let go for the close to go out)
            cancel(task)

    # -- client -> server -----------------------------------------------------------------

    def handle(self, raw: str | bytes):
        """Handle one client frame. Returns None, or an awaitable when ``canAccess`` is async."""
        if self.closing:
            return None  # timed out: the close frame follows the IDLE_TIMEOUT event
        try:
            if len(raw) > MAX_FRAME:
                raise _Bad("FRAME_TOO_LARGE", f"frames are limited to {MAX_FRAME} bytes, got {len(raw)}")
            try:
                message = _decode(raw)
            except JSONTooDeep as exc:
                raise _Bad("MALFORMED_FRAME", f"not JSON: {exc.errors[0]['message']}") from None
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                raise _Bad("MALFORMED_FRAME", f"not JSON: {exc}") from None
            if not isinstance(message, dict):
                raise _Bad("MALFORMED_FRAME", 'expected {"type": "join"|"leave", "data": {...}}')
            kind = message.get("type")
            data = message.get("data")
            if kind not in ("join", "leave"):
                raise _Bad("UNKNOWN_MESSAGE_TYPE", f'unknown message type {kind!r}; expected "join" or "leave"',
                           _room_of(data))
            room, sub_id = _parse_subscription(data)
            if kind == "leave":
                if self.subs:
                    self.leave(sub_id)
                    if not self.subs:  # the last one: the idle timeout starts again
                        self.arm_idle()
                return None
            return self.join(sub_id, room)
        except _Bad as bad:
            self.error(bad.room, bad.code, bad.message)
            return None
        except Exception as exc:  # a fault of edge on this frame: say so, keep the socket
            self.sockets.log("error", f"stream client {self.peer or '?'}: handling a frame failed: "
                                      f"{type(exc).__name__}: {exc}")
            self.error(None, "INTERNAL_ERROR", "edge failed to handle this frame (see its log); the socket stays open")
            return None

    def join(self, sub_id: str, room: tuple):
        stream_name, group, id = room
        streams = self.sockets.streams
        stream = streams.streams.get(stream_name)
        if stream is None:
            known = ", ".join(sorted(streams.streams)) or "none"
            raise _Bad("STREAM_NOT_FOUND", f"no stream named {stream_name!r}; known streams: {known}", room)
        if sub_id not in self.subs and len(self.subs) >= MAX_SUBSCRIPTIONS:
            raise _Bad("TOO_MANY_SUBSCRIPTIONS",
                       f"a socket may hold {MAX_SUBSCRIPTIONS} subscriptions; leave some or open another socket",
                       room)
        can_access = stream.definition.can_access
        if can_access is None:
            access = self.sockets.access
            refused = access.stream_refusal(self.token_ok, self.auth is not None) if access is not None else None
            if refused is not None:
                raise _Bad("STREAM_ACCESS_DENIED", refused, room)
            self._subscribe(sub_id, room)
            return None
        subscription = Subscription(streamName=stream_name, groupId=group, id=id, subscriptionId=sub_id)
        if inspect.iscoroutinefunction(can_access) or inspect.iscoroutinefunction(
                getattr(type(can_access), "__call__", None)):  # (an object with an async __call__)
            try:
                pending = can_access(subscription, self.auth)
            except BaseException as exc:  # (a coroutine function raises only when awaited; to be sure)
                pending = _raised(exc)
        else:  # a sync one (a token check against a database) runs off the loop: it stalled every client
            pending = self.sockets.in_thread(can_access, subscription, self.auth)
        return self._join_later(sub_id, room, stream, pending)

    async def _join_later(self, sub_id, room, stream, pending) -> None:
        try:
            allowed = await pending
            if inspect.isawaitable(allowed):  # a sync callable that answered with a coroutine
                allowed = await allowed
            allowed = bool(allowed)  # user code too: a numpy array's bool() raises
        except BaseException as exc:  # user code: whatever it raises denies the join
            if cancelled_from_outside(exc):  # the socket closed
                raise
            self._access_failed(stream, exc)
            allowed = False
        if not self.closed and not self.closing:
            self._admit(sub_id, room, allowed)

    def _admit(self, sub_id, room, allowed) -> None:
        if allowed:
            self._subscribe(sub_id, room)
        else:
            self.error(room, "STREAM_ACCESS_DENIED", "canAccess denied this subscription")

    def _access_failed(self, stream, exc) -> None:
        self.sockets.log("error", f"{stream.definition.file or stream.name}: canAccess raised "
                                  f"{describe(exc)}; the join is denied")

    def _subscribe(self, sub_id: str, room: tuple) -> None:
        """Register and answer with ``sync`` in one synchronous step: no event can come between."""
        streams = self.sockets.streams
        previous = self.subs.get(sub_id)
        if previous != room:  # a new subscription, or one moved to another room
            self.leave(sub_id)
            self.subs[sub_id] = room
            self.rooms[room] += 1
            if self.rooms[room] == 1:
                streams.hub.add(room, self)
        stream_name, group, id = room
        if id is not None:
            self.push(streams.hub.frame(stream_name, group, id, streams.sync_event(stream_name, group, id)))
            return
        # A group: the first piece as the sync, the rest once the socket has sent it (GroupSync).
        sync = GroupSync(streams, stream_name, group)
        items = msgspec.Raw(b"[" + b",".join(item for _, item in sync.next_items()) + b"]")
        self.push(streams.hub.frame(stream_name, group, None, {"type": "sync", "data": items}))
        self.syncs.pop(sub_id, None)  # a join again restarts its sync
        if not sync.done:
            self.syncs[sub_id] = sync  # last: after the syncs already under way

    def leave(self, sub_id: str) -> None:
        self.syncs.pop(sub_id, None)
        room = self.subs.pop(sub_id, None)
        if room is None:
            return  # leaving twice, or a subscription that was never admitted: nothing to do
        self.rooms[room] -= 1
        if self.rooms[room] <= 0:
            del self.rooms[room]
            self.sockets.streams.hub.remove(room, self)

    # -- idleness --------------------------------------------------------------------------

    def arm_idle(self) -> None:
        """Close this socket in ``idle_timeout`` seconds unless it subscribes before (asyncio side)."""
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(self.sockets.idle_timeout, self._idle_expired)

    def _idle_expired(self) -> None:
        """The timer's callback: the IDLE_TIMEOUT event, then (once it is out) the close frame."""
        self.idle = None
        if self.closed or self.subs or self.closing:
            return
        try:
            self.closing = POLICY
            self.sockets.closed_idle += 1
            timeout = f"{self.sockets.idle_timeout:g}"
            self.error(None, "IDLE_TIMEOUT", f"this socket held no subscription for {timeout} s "
                                             f"(EDGE_IDLE_TIMEOUT); join within {timeout} s of connecting "
                                             f"or of leaving the last subscription")
            # A peer that does not read would keep the event (and the socket) forever: bounded.
            self.idle = asyncio.get_running_loop().call_later(CLOSE_GRACE, self.close, POLICY)
        except Exception as exc:  # a timer callback has no caller to raise to: close regardless
            self.sockets.log("error", f"stream client {self.peer or '?'}: closing an idle socket failed: "
                                      f"{type(exc).__name__}: {exc}")
            self.close(POLICY)

    def error(self, room: tuple | None, code: str, message: str) -> None:
        """Answer with ``{"type": "event", "event": {"type": "error", "data": {code, message}}}``."""
        stream_name, group, id = room if room is not None else ("", "", None)
        event = {"type": "event", "event": {"type": "error", "data": {"code": code, "message": message}}}
        self.push(self.sockets.streams.hub.frame(stream_name, group, id, event))


def _room_of(data) -> tuple | None:
    if isinstance(data, dict):
        stream_name, group, id = data.get("streamName"), data.get("groupId"), data.get("id")
        if isinstance(stream_name, str) and isinstance(group, str):
            return stream_name, group, id if isinstance(id, str) and id else None
    return None


def _parse_subscription(data) -> tuple[tuple, str]:
    if not isinstance(data, dict):
        raise _Bad("MALFORMED_FRAME", 'expected "data": {"streamName", "groupId", "id"?, "subscriptionId"}')
    room = _room_of(data)
    for field in ("streamName", "groupId"):
        value = data.get(field)
        if not isinstance(value, str) or not value or "\x00" in value:
            raise _Bad("MALFORMED_FRAME", f'data.{field} must be a non-empty string without NUL characters, '
                                          f'got {value!r}', room)
    id = data.get("id")
    if id is not None and (not isinstance(id, str) or "\x00" in id):
        raise _Bad("MALFORMED_FRAME", f"data.id must be a string without NUL characters, got {id!r}", room)
    room = (data["streamName"], data["groupId"], id or None)
    try:
        key_size = sum(len(part.encode()) for part in room if part) + 2  # name NUL group NUL id
    except UnicodeEncodeError:
        raise _Bad("MALFORMED_FRAME", "streamName, groupId and id must be valid Unicode (no lone surrogates)",
                   room) from None
    if key_size > MAX_KEY:
        raise _Bad("ID_TOO_LONG", f"streamName, groupId and id together are {key_size} bytes; "
                                  f"the limit is {MAX_KEY} (LMDB's key size)", room)
    sub_id = data.get("subscriptionId")
    if sub_id is None:
        # Hand-written clients may leave it out: the room then names the subscription.
        sub_id = "/".join(part or "" for part in room)
    elif not isinstance(sub_id, str) or not sub_id:
        raise _Bad("MALFORMED_FRAME", f"data.subscriptionId must be a non-empty string, got {sub_id!r}", room)
    return room, sub_id


def client_token(headers, query_string: str) -> tuple[str | None, str | None]:
    """The auth token a client sent, and the subprotocol to echo (``"Authorization"`` or None).

    Motia's clients send ``Sec-WebSocket-Protocol: Authorization, <token>``; others
    ``?authToken=<token>``.
    """
    offered = [p.strip() for p in (headers.get("sec-websocket-protocol") or "").split(",") if p.strip()]
    token, echo = None, None
    if "Authorization" in offered:
        echo = "Authorization"  # echoed even without a token after it, or the client gives up
        rest = offered[offered.index("Authorization") + 1:]
        token = rest[0] if rest else None
    if token is None and query_string:
        values = parse_qs(query_string).get("authToken")
        if values and values[0]:
            token = values[0]
    return token, echo


class StreamSockets:
    """Every stream WebSocket of the server (``app.websocket``)."""

    def __init__(self, streams: Streams, tracer=None, access=None, idle_timeout: float = IDLE_TIMEOUT):
        self.streams = streams
        self.tracer = tracer
        #: edge.server.access.AccessPolicy: EDGE_STREAMS_REQUIRE_TOKEN and the token (None: open).
        self.access = access
        self.clients: set[Client] = set()
        self.handlers: set[asyncio.Future] = set()
        #: Clients cut off for not reading (see ``Client.push``).
        self.disconnected_slow = 0
        #: Seconds a socket may hold no subscription before it is closed (``Client.arm_idle``).
        self.idle_timeout = idle_timeout
        #: Sockets closed for that (no log line each: a LAN peer can open thousands).
        self.closed_idle = 0
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # sync canAccess (made on first use)

    async def in_thread(self, fn, *args):
        """``fn(*args)`` in the small pool of sync ``canAccess`` checks, awaited."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(ACCESS_THREADS, thread_name_prefix="edge-can-access")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def stats(self) -> dict:
        """For the health endpoint: live sockets, slow clients cut off, idle sockets closed."""
        return {"sockets": len(self.clients), "disconnected_slow": self.disconnected_slow,
                "closed_idle": self.closed_idle}

    def log(self, level: str, message: str) -> None:
        if self.tracer is not None:
            self.tracer.log(level, message)

    def forget(self, client: Client) -> None:
        self.clients.discard(client)
        hub = self.streams.hub
        for room in client.rooms:
            hub.remove(room, client)
        client.rooms.clear()
        client.subs.clear()

    # -- the RSGI entry point -------------------------------------------------------------

    async def __call__(self, scope, proto) -> None:
        token, subprotocol = client_token(scope.headers, scope.query_string)
        try:
            transport = await (proto.accept(subprotocol) if subprotocol and _accepts_subprotocol(proto)
                               else proto.accept())
        except Exception:
            return  # the peer left during the handshake
        auth = AuthContext(token=token) if token is not None else None
        client = Client(self, proto, auth, peer=getattr(scope, "client", "") or "")
        await self.serve_client(client, _receiver(transport), transport.send_str)

    async def serve_client(self, client: Client, receive, send) -> None:
        """Run one socket: a reader (this task's child) and a writer, until either ends."""
        self.clients.add(client)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self.handlers.add(done)
        reader = loop.create_task(self._read_loop(client, receive))
        writer = loop.create_task(client.write_loop(send))
        client.tasks = (reader, writer)
        client.arm_idle()
        try:
            await asyncio.wait(client.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            client.close(GOING_AWAY)  # no-op when already closed
            tasks, client.tasks = client.tasks, ()
            for task in tasks:
                cancel(task)
            await asyncio.gather(*tasks, return_exceptions=True)
            # Under the ASGI adapter the close frame is sent by a task: wait for it, so that
            # close_all (which waits for `done`) never lets the server stop before it is out.
            finish = getattr(client.proto, "finish", None)
            if finish is not None:
                await finish()
            # Granian finishes the closing handshake when its socket objects are freed: leave
            # no reference cycle (client -> task -> frame -> client) that would keep them
            # alive until the next garbage collection, with the peer waiting for our close.
            client.proto = None
            del tasks, reader, writer
            self.handlers.discard(done)
            done.set_result(None)

    async def _read_loop(self, client: Client, receive) -> None:
        while not client.closed:
            raw = await receive()
            if raw is None:
                return
            pending = client.handle(raw)
            if pending is not None:
                await pending  # frames are processed in order: the next waits for this join

    async def close_all(self) -> None:
        """On shutdown: a close frame (1001 going away) to every socket, then a bounded wait."""
        for client in list(self.clients):
            client.close(GOING_AWAY)
        if self.handlers:
            # (under ASGI each handler waits up to CLOSE_GRACE for its close frame to go out)
            await asyncio.wait(list(self.handlers), timeout=2 * CLOSE_GRACE)
        if self._pool is not None:  # a check still running finishes in the background
            self._pool.shutdown(wait=False, cancel_futures=True)


async def _raised(exc: BaseException):
    raise exc


def _accepts_subprotocol(proto) -> bool:
    """RSGI's ``accept()`` takes no subprotocol (Granian 2.8); an ASGI adapter's does."""
    return getattr(proto, "accepts_subprotocol", False)


def _receiver(transport):
    """``receive() -> str | bytes | None`` (None: closed) over Granian's RSGI transport."""
    from_transport = transport.receive

    async def receive():
        try:
            message = await from_transport()
        except Exception:  # RSGIProtocolClosed
            return None
        if message.kind == 0:
            return None
        return message.data

    return receive
