// Small helpers shared by every view: building DOM and SVG, calling the runtime, formatting.

const SVG_NS = "http://www.w3.org/2000/svg";
const TOKEN_KEY = "edge-token";

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "value" && "value" in el) el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** h("div", {class: "x", onclick: fn}, "text", child, [more]) */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

// -- the runtime's endpoints -----------------------------------------------------------------

export class AuthNeeded extends Error {}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** Call a /__edge/ endpoint: JSON in and out, the token when there is one. */
export async function api(path, { method = "GET", query, body, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const headers = {};
  const t = token.get();
  if (t) headers.authorization = `Bearer ${t}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(url, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  const text = await res.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (res.status === 401) {
    window.dispatchEvent(new CustomEvent("edge:auth", { detail: data }));
    throw new AuthNeeded((data && data.detail) || "sign in");
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/** Run fn now and every `ms` while the view is open (stops when `signal` aborts). */
export function every(ms, signal, fn) {
  let timer = null;
  const tick = async () => {
    if (signal.aborted) return;
    try { await fn(); } catch (err) { if (!(err instanceof AuthNeeded)) console.warn(err); }
    if (!signal.aborted) timer = setTimeout(tick, document.hidden ? ms * 4 : ms);
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  tick();
}

// -- formatting ------------------------------------------------------------------------------

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
}

export function ms(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return `${(value * 1000).toFixed(0)} µs`;
  if (value < 1000) return `${value < 10 ? value.toFixed(1) : value.toFixed(0)} ms`;
  if (value < 60_000) return `${(value / 1000).toFixed(value < 10_000 ? 2 : 1)} s`;
  return duration(value / 1000);
}

export function duration(seconds) {
  seconds = Math.floor(seconds);
  const d = Math.floor(seconds / 86400), hh = Math.floor(seconds % 86400 / 3600);
  const mm = Math.floor(seconds % 3600 / 60), ss = seconds % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${ss}s`;
  return `${ss}s`;
}

export function clock(ts) {
  const d = new Date(ts * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function when(ts) {
  const d = new Date(ts * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return d.toDateString() === new Date().toDateString() ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

export function ago(ts) {
  const s = Date.now() / 1000 - ts;
  if (s < 0) return `in ${duration(-s)}`;
  if (s < 5) return "just now";
  return `${duration(s)} ago`;
}

export function short(id, n = 8) {
  return id ? String(id).slice(0, n) : "";
}

export function compact(value, max = 160) {
  if (value === null || value === undefined) return "";
  let text;
  try { text = typeof value === "string" ? value : JSON.stringify(value); } catch { text = String(value); }
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/** Pretty JSON with colours; built from text nodes, so nothing in the value is ever markup. */
export function json(value) {
  const pre = h("pre", { class: "json" });
  const walk = (v, indent) => {
    const pad = "  ".repeat(indent);
    if (v === null) return pre.append(h("span", { class: "j-null" }, "null"));
    if (Array.isArray(v)) {
      if (!v.length) return pre.append("[]");
      pre.append("[\n");
      v.forEach((item, i) => {
        pre.append(pad + "  ");
        walk(item, indent + 1);
        pre.append(i < v.length - 1 ? ",\n" : "\n");
      });
      return pre.append(pad + "]");
    }
    if (typeof v === "object") {
      const keys = Object.keys(v);
      if (!keys.length) return pre.append("{}");
      pre.append("{\n");
      keys.forEach((k, i) => {
        pre.append(pad + "  ", h("span", { class: "j-key" }, JSON.stringify(k)), ": ");
        walk(v[k], indent + 1);
        pre.append(i < keys.length - 1 ? ",\n" : "\n");
      });
      return pre.append(pad + "}");
    }
    const kind = typeof v === "string" ? "j-str" : typeof v === "number" ? "j-num" : "j-bool";
    pre.append(h("span", { class: kind }, JSON.stringify(v)));
  };
  walk(value, 0);
  return pre;
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}` }, text);
}

export function statusBadge(status) {
  const kind = { ok: "ok", error: "err", retry: "warn", skipped: "muted" }[status] || "muted";
  return badge(status, kind);
}

export function methodBadge(method) {
  return h("span", { class: `method m-${method.toLowerCase()}` }, method);
}

export function traceLink(id) {
  return id ? h("a", { class: "mono trace-link", href: `#/traces/${encodeURIComponent(id)}`, title: id }, short(id)) : "";
}

export function empty(text) {
  return h("div", { class: "empty" }, text);
}

export function errorBox(err) {
  return h("div", { class: "error-box" }, err && err.message ? err.message : String(err));
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

export function triggerText(t) {
  switch (t.type) {
    case "http": return `${t.method} ${t.path}`;
    case "queue": return t.topic;
    case "cron": return t.words || t.expression;
    case "state": return t.group ? `group ${t.group}${t.key ? ` / ${t.key}` : ""}` : "any state change";
    case "stream": return `${t.streamName}${t.groupId ? ` / ${t.groupId}` : ""}`;
    default: return t.type;
  }
}
