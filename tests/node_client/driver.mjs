// Drives @motiadev/stream-client-node for tests/test_ws.py: one JSON command per stdin line,
// one JSON answer per stdout line ({"id", "result"} or {"id", "error"}).
//
//   {"id": 1, "cmd": "connect", "url": "ws://127.0.0.1:3000/", "token": "secret"?}
//   {"id": 2, "cmd": "group", "name": "g", "stream": "todos", "group": "all", "sortKey": "id"?}
//   {"id": 3, "cmd": "item", "name": "i", "stream": "todos", "group": "all", "item": "a1"}
//   {"id": 4, "cmd": "listen", "name": "g", "type": "ping"}       custom events of a type
//   {"id": 5, "cmd": "state", "name": "g"}   -> {state, changes, events, open, protocol, opens, closes}
//   {"id": 6, "cmd": "unsubscribe", "name": "g"}
//   {"id": 7, "cmd": "close"}
import { Stream } from "@motiadev/stream-client-node";
import readline from "node:readline";

let stream = null;
let opens = 0;
let closes = 0;
const subs = {};

function socket() {
  return stream && stream.ws && stream.ws.ws;
}

function watch(adapter) {
  adapter.onOpen(() => { opens += 1; });
  adapter.onClose(() => { closes += 1; });
  // Without a listener, a failed handshake would end the process.
  adapter.ws.on("error", (e) => { process.stderr.write(`socket error: ${e.message}\n`); });
}

function watchSocket() {
  // The client re-creates its socket 2 s after a close; watch each one.
  const original = stream.createSocket.bind(stream);
  stream.createSocket = () => {
    const adapter = original();
    watch(adapter);
    return adapter;
  };
  watch(stream.ws);
}

function record(name, sub, listen) {
  const entry = { sub, changes: 0, events: [], last: null };
  sub.addChangeListener((state) => { entry.changes += 1; entry.last = state; });
  // Listeners given with the subscription are registered in the same tick as the join, so an
  // answer that comes back at once (a denied join's error event) cannot be missed.
  for (const type of listen || []) sub.onEvent(type, (data) => entry.events.push({ type, data }));
  subs[name] = entry;
}

const commands = {
  connect({ url, token }) {
    const protocols = token ? ["Authorization", token] : undefined;
    stream = new Stream(url, { protocols });
    watchSocket();
    return true;
  },
  group({ name, stream: streamName, group, sortKey, listen }) {
    record(name, stream.subscribeGroup(streamName, group, sortKey), listen);
    return true;
  },
  item({ name, stream: streamName, group, item, listen }) {
    record(name, stream.subscribeItem(streamName, group, item), listen);
    return true;
  },
  listen({ name, type }) {
    const entry = subs[name];
    entry.sub.onEvent(type, (data) => entry.events.push({ type, data }));
    return true;
  },
  state({ name }) {
    const ws = socket();
    const entry = name ? subs[name] : null;
    return {
      state: entry ? entry.sub.getState() : null,
      changes: entry ? entry.changes : 0,
      events: entry ? entry.events : [],
      open: !!(stream && stream.ws.isOpen()),
      protocol: ws ? ws.protocol : null,
      opens,
      closes,
    };
  },
  unsubscribe({ name }) {
    subs[name].sub.close();
    delete subs[name];
    return true;
  },
  close() {
    stream.close();
    return true;
  },
};

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let message;
  try {
    message = JSON.parse(line);
    const result = commands[message.cmd](message);
    process.stdout.write(JSON.stringify({ id: message.id, result }) + "\n");
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: message && message.id, error: String(e && e.stack || e) }) + "\n");
  }
});
rl.on("close", () => process.exit(0));
