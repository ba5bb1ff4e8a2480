// #/streams[/<stream>[/<group>]]: streams, their groups, and a live view of one group
// (the stream WebSocket protocol of docs/streams.md: join a group, get a sync, then changes).
import { h, clear, api, json, badge, compact, clock, empty, token } from "./util.js";

const MAX_EVENTS = 200;
const TOKEN_CHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export async function render(el, args, signal) {
  const [name, group] = args;
  const { streams } = await api("/__edge/streams", { signal });
  if (!streams.length) {
    el.append(empty("No streams: add a *_stream.py file under steps/ (docs/streams.md)."));
    return;
  }
  const side = h("nav", { class: "card list" }, h("h2", {}, "Streams"), h("ul", { class: "plain picks" }, streams.map((st) =>
    h("li", {}, h("a", { href: `#/streams/${encodeURIComponent(st.name)}`, class: st.name === name ? "active" : "" }, st.name,
      h("span", { class: "count" }, String(st.groups.length)))))));
  const mainEl = h("div", { class: "stack" });
  el.append(h("div", { class: "split" }, side, mainEl));
  const stream = streams.find((st) => st.name === name);
  if (!stream) {
    mainEl.append(h("div", { class: "card" }, h("table", { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "stream"), h("th", {}, "storage"), h("th", {}, "access"), h("th", {}, "groups"), h("th", {}, "file"))),
      h("tbody", {}, streams.map((st) => h("tr", { class: "clickable", onclick: () => { location.hash = `#/streams/${encodeURIComponent(st.name)}`; } },
        h("td", {}, h("strong", {}, st.name), st.description ? h("div", { class: "muted small" }, st.description) : null),
        h("td", {}, badge(st.storage === "memory" ? "memory" : "stored (LMDB)", "muted")),
        h("td", {}, st.access === "open" ? "anyone who reaches the port" : "canAccess"),
        h("td", { class: "num" }, String(st.groups.length)),
        h("td", { class: "mono small" }, st.file)))))));
    return;
  }
  mainEl.append(h("div", { class: "card" },
    h("div", { class: "panel-head" }, h("h2", {}, stream.name), badge(stream.storage === "memory" ? "memory" : "stored (LMDB)", "muted")),
    stream.description ? h("p", {}, stream.description) : null,
    h("h3", {}, "Groups"),
    stream.groups.length ? h("div", { class: "chips" }, stream.groups.map((g) =>
      h("a", { class: `pill${g === group ? " active" : ""}`, href: `#/streams/${encodeURIComponent(stream.name)}/${encodeURIComponent(g)}` }, g)))
      : empty("No groups yet.")));
  if (group) live(mainEl, stream.name, group, signal);
}

function live(el, stream, group, signal) {
  const items = new Map();
  const state = h("span", { class: "live off" }, "connecting…");
  const itemsBody = h("tbody", {});
  const events = h("ol", { class: "events" });
  el.append(
    h("div", { class: "card" }, h("div", { class: "panel-head" }, h("h2", {}, `${group}`, h("span", { class: "count", id: "item-count" }, "0")), state),
      h("div", { class: "scroll-x" }, h("table", { class: "table" }, h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "item"))), itemsBody))),
    h("div", { class: "card" }, h("h2", {}, "Live events"), events));

  const redraw = () => {
    clear(itemsBody);
    for (const [id, item] of items) {
      itemsBody.append(h("tr", { dataset: { id } }, h("td", { class: "mono nowrap" }, id),
        h("td", {}, h("details", {}, h("summary", { class: "mono small" }, compact(item, 140)), json(item)))));
    }
    el.querySelector("#item-count").textContent = String(items.size);
  };
  const note = (type, id, data) => {
    events.prepend(h("li", {}, h("span", { class: "mono muted" }, clock(Date.now() / 1000)), " ",
      badge(type, { create: "ok", update: "info", delete: "err", sync: "muted", event: "warn" }[type] || "muted"), " ",
      id ? h("span", { class: "mono" }, id) : null, " ", h("span", { class: "mono small muted" }, compact(data, 120))));
    while (events.childElementCount > MAX_EVENTS) events.lastElementChild.remove();
  };

  const t = token.get();
  const url = new URL("/", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  let protocols;
  if (t && TOKEN_CHARS.test(t)) protocols = ["Authorization", t];
  else if (t) url.searchParams.set("authToken", t);
  const ws = new WebSocket(url, protocols);
  const subscriptionId = `console-${Math.random().toString(36).slice(2, 10)}`;
  signal.addEventListener("abort", () => ws.close(1000));
  ws.addEventListener("open", () => {
    state.className = "live on";
    state.textContent = "live";
    ws.send(JSON.stringify({ type: "join", data: { streamName: stream, groupId: group, subscriptionId } }));
  });
  ws.addEventListener("close", () => {
    if (signal.aborted) return;
    state.className = "live off";
    state.textContent = "disconnected";
  });
  ws.addEventListener("message", (msg) => {
    let frame;
    try { frame = JSON.parse(msg.data); } catch { return; }
    if (frame.type !== "stream" || frame.streamName !== stream || frame.groupId !== group) return;
    const ev = frame.event || {};
    if (ev.type === "sync" && Array.isArray(ev.data)) {
      items.clear();
      for (const item of ev.data) items.set(item.id, item);
      note("sync", null, `${ev.data.length} item(s)`);
    } else if (ev.type === "create" || ev.type === "update" || ev.type === "sync") {
      items.set(ev.data.id, ev.data);
      note(ev.type, ev.data.id, ev.data);
    } else if (ev.type === "delete") {
      items.delete(ev.data.id);
      note("delete", ev.data.id, ev.data);
    } else if (ev.type === "event") {
      const custom = ev.event || {};
      if (custom.type === "error") {
        state.className = "live off";
        state.textContent = custom.data && custom.data.code === "STREAM_ACCESS_DENIED" ? "access denied" : "error";
      }
      note("event", custom.type, custom.data);
      return;
    }
    redraw();
  });
}
