// The console's shell: navigation by URL fragment, the health strip, the sign-in form.
import { h, s, clear, api, token, every, bytes, duration, errorBox, AuthNeeded } from "./util.js";

const VIEWS = [
  { id: "flows", title: "Flows", load: () => import("./flows.js"), icon: "M4 6h6v5H4zM14 13h6v5h-6zM10 8.5h2a2 2 0 0 1 2 2v5" },
  { id: "endpoints", title: "Endpoints", load: () => import("./endpoints.js"), icon: "M5 7h14M5 12h14M5 17h9" },
  { id: "logs", title: "Logs", load: () => import("./logs.js"), icon: "M5 5h14v14H5zM8 9h8M8 12h8M8 15h5" },
  { id: "traces", title: "Traces", load: () => import("./traces.js"), icon: "M4 6h9M7 10h11M9 14h6M6 18h8" },
  { id: "state", title: "State", load: () => import("./state.js"), icon: "M12 4c4.4 0 8 1.3 8 3s-3.6 3-8 3-8-1.3-8-3 3.6-3 8-3zM4 7v10c0 1.7 3.6 3 8 3s8-1.3 8-3V7M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3" },
  { id: "streams", title: "Streams", load: () => import("./streams.js"), icon: "M3 12c3-6 6 6 9 0s6 6 9 0" },
  { id: "queues", title: "Queues", load: () => import("./queues.js"), icon: "M4 6h16v4H4zM4 14h16v4H4z" },
];

const shared = { model: null };

/** The app model (steps, topics, streams): fetched once, shared by the views. */
export async function appModel() {
  if (!shared.model) shared.model = api("/__edge/app").catch((err) => { shared.model = null; throw err; });
  return shared.model;
}

let current = null;

function parseHash() {
  const parts = (location.hash || "#/flows").replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const view = VIEWS.find((v) => v.id === parts[0]) || VIEWS[0];
  return { view, args: parts.slice(1) };
}

async function route() {
  const { view, args } = parseHash();
  if (current) current.controller.abort();
  const controller = new AbortController();
  current = { view, controller };
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view.id);
  document.getElementById("title").textContent = view.title;
  document.title = `${view.title} · edge console`;
  const container = clear(document.getElementById("view"));
  container.className = `view view-${view.id}`;
  try {
    const mod = await view.load();
    if (controller.signal.aborted) return;
    await mod.render(container, args, controller.signal);
  } catch (err) {
    if (controller.signal.aborted) return;
    if (!(err instanceof AuthNeeded)) container.append(errorBox(err));
  }
}

function nav() {
  const el = document.getElementById("nav");
  for (const v of VIEWS) {
    el.append(h("a", { href: `#/${v.id}`, dataset: { view: v.id } },
      s("svg", { viewBox: "0 0 24 24", width: 18, height: 18, "aria-hidden": "true" },
        s("path", { d: v.icon, fill: "none", stroke: "currentColor", "stroke-width": 1.7, "stroke-linecap": "round", "stroke-linejoin": "round" })),
      h("span", {}, v.title)));
  }
}

// -- health strip ------------------------------------------------------------------------------

function chip(label, value, title, kind = "") {
  return h("div", { class: `chip ${kind}`, title: title || label }, h("span", { class: "chip-label" }, label), h("span", { class: "chip-value" }, value));
}

async function refreshHealth() {
  const el = document.getElementById("health");
  const [sys, health] = await Promise.all([api("/__edge/system"), api("/__edge/health")]);
  const q = health.queues;
  const ok = health.status === "ok";
  const diskKind = sys.disk_free_bytes !== null && sys.disk_total_bytes && sys.disk_free_bytes / sys.disk_total_bytes < 0.05 ? "bad" : "";
  clear(el).append(...[
    h("div", { class: `chip status ${ok ? "good" : "bad"}`, title: `runtime ${health.status}` }, h("span", { class: "dot" }), health.status),
    chip("RSS", bytes(sys.rss_bytes), "resident memory of the edge process"),
    chip("up", duration(sys.uptime_s), `running since ${new Date(sys.started_at * 1000).toLocaleString()}`),
    chip("data", bytes(sys.data_dir_bytes), `data directory ${sys.data_dir} (${sys.durability})`),
    chip("free", bytes(sys.disk_free_bytes), `free on the disk holding ${sys.data_dir}`, diskKind),
    chip("commits", sys.commits.toLocaleString(), `${sys.ops_committed.toLocaleString()} writes in ${sys.commits.toLocaleString()} group commits`),
    chip("fsyncs", sys.fsyncs.toLocaleString(), "one fsync per group commit"),
    q ? chip("queued", q.depth.toLocaleString(), `${q.in_flight} in flight, ${q.retrying} retrying`) : null,
    q ? chip("dead", q.dead_letters.toLocaleString(), "dead letters", q.dead_letters ? "bad" : "") : null,
  ].filter(Boolean));
}

// -- sign-in -----------------------------------------------------------------------------------

function showSignIn(detail) {
  const overlay = document.getElementById("signin");
  if (!overlay.hidden) return;
  document.getElementById("signin-why").textContent =
    (detail && detail.detail) || "This runtime needs its token (EDGE_TOKEN).";
  overlay.hidden = false;
  document.getElementById("signin-token").focus();
}

function signInForm() {
  document.getElementById("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = document.getElementById("signin-token");
    token.set(input.value.trim());
    input.value = "";
    document.getElementById("signin").hidden = true;
    document.getElementById("signout").hidden = false;
    shared.model = null;
    start();
  });
  const out = document.getElementById("signout");
  out.hidden = !token.get();
  out.addEventListener("click", () => { token.clear(); location.reload(); });
  window.addEventListener("edge:auth", (ev) => showSignIn(ev.detail));
}

let healthTimer = null;

async function start() {
  if (healthTimer) healthTimer.abort();
  healthTimer = new AbortController();
  every(5000, healthTimer.signal, refreshHealth);
  try {
    const model = await appModel();
    document.getElementById("project").textContent = model.project;
  } catch { /* shown by the view */ }
  route();
}

nav();
signInForm();
window.addEventListener("hashchange", route);
start();
