// #/logs[/step/<name>|/trace/<id>|/level/<level>]: the recent lines, then a live tail (long poll).
import { h, clear, api, json, clock, compact, traceLink, AuthNeeded } from "./util.js";
import { appModel } from "./app.js";

//: Lines kept on the page; older ones are dropped as new ones arrive.
const MAX_LINES = 1000;
const LEVELS = ["debug", "info", "warn", "error"];

export async function render(el, args, signal) {
  const filters = { step: "", level: "", trace_id: "" };
  for (let i = 0; i + 1 < args.length; i += 2) {
    if (args[i] === "step") filters.step = args[i + 1];
    if (args[i] === "trace") filters.trace_id = args[i + 1];
    if (args[i] === "level") filters.level = args[i + 1];
  }
  const model = await appModel().catch(() => ({ steps: [] }));
  const step = h("select", { name: "step" }, h("option", { value: "" }, "all steps"),
    model.steps.map((st) => h("option", { value: st.name }, st.name)));
  step.value = filters.step;
  const level = h("select", { name: "level" }, h("option", { value: "" }, "any level"),
    LEVELS.map((l) => h("option", { value: l }, `${l} and above`)));
  level.value = filters.level;
  const trace = h("input", { name: "trace", placeholder: "trace id", value: filters.trace_id, class: "mono" });
  const pause = h("button", { type: "button", class: "toggle" }, "Pause");
  const status = h("span", { class: "live" });
  const body = h("tbody", {});
  const table = h("table", { class: "table logs" },
    h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "level"), h("th", {}, "step"), h("th", {}, "message"), h("th", {}, "trace"))), body);
  const toolbar = h("form", { class: "toolbar" }, step, level, trace, pause,
    h("button", { type: "button", onclick: () => clear(body) }, "Clear"), status);
  el.append(toolbar, h("div", { class: "card flush scroll-x" }, table));

  const apply = () => {
    const parts = [];
    if (step.value) parts.push("step", encodeURIComponent(step.value));
    if (level.value) parts.push("level", level.value);
    if (trace.value.trim()) parts.push("trace", encodeURIComponent(trace.value.trim()));
    location.hash = `#/logs${parts.length ? "/" + parts.join("/") : ""}`;
  };
  step.addEventListener("change", apply);
  level.addEventListener("change", apply);
  toolbar.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });

  let paused = false;
  let wake = null;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.classList.toggle("on", paused);
    setStatus();
    if (!paused && wake) wake();
  });
  const setStatus = (text) => {
    status.className = `live ${paused ? "paused" : text ? "off" : "on"}`;
    status.textContent = paused ? "paused" : text || "live";
  };

  const add = (records) => {
    const stick = el.closest(".main") ? atBottom() : true;
    for (const r of records) body.append(row(r));
    while (body.childElementCount > MAX_LINES) body.firstElementChild.remove();
    if (stick && records.length) window.scrollTo(0, document.body.scrollHeight);
  };

  const query = { step: filters.step, level: filters.level, trace_id: filters.trace_id };
  let first;
  try {
    first = await api("/__edge/logs/tail", { query: { ...query, limit: 200 }, signal });
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  }
  add(first.logs);
  if (!first.logs.length) body.append(h("tr", { class: "placeholder" }, h("td", { colspan: 5, class: "empty" }, "No log lines yet; new ones appear here as they happen.")));
  setStatus();
  let after = first.last;
  (async () => {
    while (!signal.aborted) {
      if (paused) { await new Promise((resolve) => { wake = resolve; }); wake = null; continue; }
      try {
        const next = await api("/__edge/logs/tail", { query: { ...query, after, timeout: 20, limit: 500 }, signal });
        after = next.last;
        if (next.logs.length) {
          body.querySelector(".placeholder")?.remove();
          add(next.logs);
        }
        setStatus();
      } catch (err) {
        if (signal.aborted) return;
        setStatus(err instanceof AuthNeeded ? "signed out" : "reconnecting…");
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  })();
}

function atBottom() {
  return window.innerHeight + window.scrollY >= document.body.scrollHeight - 40;
}

function row(r) {
  const data = r.data && Object.keys(r.data).length ? r.data : null;
  const tb = data && data.traceback;
  const msg = h("td", { class: "msg" }, h("span", {}, r.msg));
  if (data) {
    const rest = { ...data };
    delete rest.traceback;
    const details = h("details", {}, h("summary", { class: "mono small" }, compact(Object.keys(rest).length ? rest : "traceback", 120)),
      Object.keys(rest).length ? json(rest) : null, tb ? h("pre", { class: "traceback" }, tb) : null);
    msg.append(details);
  }
  return h("tr", { class: `lvl-${r.level}`, dataset: { seq: r.seq } },
    h("td", { class: "mono nowrap muted" }, clock(r.time)),
    h("td", {}, h("span", { class: `level l-${r.level}` }, r.level)),
    h("td", { class: "nowrap" }, r.step ? h("a", { href: `#/logs/step/${encodeURIComponent(r.step)}` }, r.step) : h("span", { class: "muted" }, "edge")),
    msg,
    h("td", {}, traceLink(r.trace_id)));
}
