// #/traces: recent traces. #/traces/<id>: one trace as a waterfall, with its log lines.
import { h, s, clear, api, every, statusBadge, badge, traceLink, when, clock, ms, empty, compact, json } from "./util.js";

export async function render(el, args, signal) {
  if (args[0]) return one(el, args[0], signal);
  const body = h("tbody", {});
  const stepFilter = h("input", { placeholder: "filter by step", class: "small-input" });
  const note = h("span", { class: "muted small" });
  el.append(h("div", { class: "toolbar" }, stepFilter, h("span", { class: "live on" }, "refreshing"), note),
    h("div", { class: "card flush scroll-x" }, h("table", { class: "table traces" },
      h("thead", {}, h("tr", {}, h("th", {}, "trace"), h("th", {}, "root"), h("th", {}, "started"), h("th", { class: "num" }, "duration"),
        h("th", { class: "num" }, "runs"), h("th", {}, "steps"), h("th", {}, "status"))), body)));
  let filter = "";
  stepFilter.addEventListener("input", () => { filter = stepFilter.value.trim(); refresh(); });
  const refresh = async () => {
    const { traces } = await api("/__edge/traces/recent", { query: { limit: 100, step: filter }, signal });
    clear(body);
    if (!traces.length) body.append(h("tr", {}, h("td", { colspan: 7 }, empty("No traces yet: send a request (Endpoints) or emit a message."))));
    for (const t of traces) {
      body.append(h("tr", { class: "clickable", onclick: (ev) => { if (ev.target.tagName !== "A") location.hash = `#/traces/${t.trace_id}`; } },
        h("td", {}, traceLink(t.trace_id)),
        h("td", {}, h("strong", {}, t.root), " ", badge(t.trigger, `t-${t.trigger}`)),
        h("td", { class: "nowrap" }, when(t.start)),
        h("td", { class: "num" }, ms(t.duration_ms)),
        h("td", { class: "num" }, String(t.spans)),
        h("td", { class: "muted small" }, t.steps.join(", ")),
        h("td", {}, statusBadge(t.status), t.error ? h("div", { class: "err small" }, compact(t.error, 80)) : null)));
    }
    note.textContent = `${traces.length} trace(s)`;
  };
  every(3000, signal, refresh);
}

async function one(el, id, signal) {
  const head = h("div", { class: "trace-head card" });
  const fall = h("div", { class: "card waterfall" });
  const logs = h("div", { class: "card flush" });
  el.append(h("p", {}, h("a", { href: "#/traces" }, "← all traces")), head, fall, h("h2", { class: "section-title" }, "Log lines of this trace"), logs);
  let lastCount = -1;
  const refresh = async () => {
    const [{ spans }, { logs: lines }] = await Promise.all([
      api("/__edge/traces", { query: { trace_id: id, limit: 1000 }, signal }),
      api("/__edge/logs", { query: { trace_id: id, limit: 500 }, signal }),
    ]);
    if (spans.length + lines.length === lastCount) return;
    lastCount = spans.length + lines.length;
    drawHead(head, id, spans);
    drawWaterfall(fall, spans);
    drawLogs(logs, lines);
  };
  every(2000, signal, refresh);
}

function drawHead(el, id, spans) {
  clear(el);
  if (!spans.length) {
    el.append(h("h2", { class: "mono" }, id), empty("No runs recorded for this trace (yet): spans are written about once a second."));
    return;
  }
  const start = Math.min(...spans.map((x) => x.start));
  const end = Math.max(...spans.map((x) => x.start + x.duration_ms / 1000));
  const errors = spans.filter((x) => x.status === "error").length;
  el.append(h("div", { class: "trace-title" }, h("h2", {}, "Trace ", h("span", { class: "mono" }, id))),
    h("dl", { class: "facts inline" },
      h("dt", {}, "started"), h("dd", {}, when(start)),
      h("dt", {}, "duration"), h("dd", {}, ms((end - start) * 1000)),
      h("dt", {}, "runs"), h("dd", {}, String(spans.length)),
      h("dt", {}, "errors"), h("dd", {}, errors ? badge(String(errors), "err") : "0")));
}

/** Spans in tree order: children (by parent id) under their parent, siblings by start. */
function ordered(spans) {
  const ids = new Set(spans.map((x) => x.span_id));
  const kids = new Map();
  const roots = [];
  for (const sp of [...spans].sort((a, b) => a.start - b.start)) {
    if (sp.parent && ids.has(sp.parent)) (kids.get(sp.parent) || kids.set(sp.parent, []).get(sp.parent)).push(sp);
    else roots.push(sp);
  }
  const out = [];
  const walk = (sp, depth) => { out.push({ sp, depth }); for (const k of kids.get(sp.span_id) || []) walk(k, depth + 1); };
  // the first root is what started the trace; later roots (queue, state, stream runs) follow from it
  roots.forEach((sp, i) => walk(sp, i === 0 ? 0 : 1));
  return out;
}

function drawWaterfall(el, spans) {
  clear(el);
  if (!spans.length) return;
  const start = Math.min(...spans.map((x) => x.start));
  const end = Math.max(...spans.map((x) => x.start + x.duration_ms / 1000));
  const total = Math.max(end - start, 0.001);
  const rows = ordered(spans);
  const ticks = h("div", { class: "wf-axis" }, [0, 0.25, 0.5, 0.75, 1].map((f) =>
    h("span", { class: "wf-tick", dataset: { f } }, ms(total * 1000 * f))));
  el.append(h("div", { class: "wf-row wf-header" }, h("div", { class: "wf-name" }, "run"), ticks));
  for (const { sp, depth } of rows) {
    const left = ((sp.start - start) / total) * 100;
    const width = Math.max((sp.duration_ms / 1000 / total) * 100, 0.4);
    const bar = s("svg", { class: "wf-bar", viewBox: "0 0 100 10", preserveAspectRatio: "none", "aria-hidden": "true" },
      s("rect", { x: Math.min(left, 100 - width), y: 1, width, height: 8, rx: 0.6, class: `bar-${sp.status}` }));
    el.append(h("div", { class: `wf-row status-${sp.status}`, dataset: { step: sp.step } },
      h("div", { class: "wf-name", dataset: { depth } },
        badge(sp.trigger, `t-${sp.trigger}`), " ", h("strong", {}, sp.step),
        h("span", { class: "muted small" }, ` +${ms((sp.start - start) * 1000)}`)),
      h("div", { class: "wf-track" }, bar,
        h("span", { class: "wf-label" }, ms(sp.duration_ms), " ", statusBadge(sp.status))),
      sp.error ? h("div", { class: "wf-error" }, sp.error, sp.error_id ? h("span", { class: "muted" }, ` (error_id ${sp.error_id})`) : null) : null));
  }
  // CSSOM, not style attributes: the page's CSP allows no inline styles
  for (const t of el.querySelectorAll(".wf-tick")) t.style.left = `${t.dataset.f * 100}%`;
  for (const n of el.querySelectorAll(".wf-name[data-depth]")) n.style.paddingLeft = `${8 + n.dataset.depth * 18}px`;
}

function drawLogs(el, lines) {
  clear(el);
  if (!lines.length) { el.append(empty("No log lines for this trace.")); return; }
  el.append(h("table", { class: "table logs" }, h("tbody", {}, lines.map((r) => h("tr", {},
    h("td", { class: "mono nowrap muted" }, clock(r.time)),
    h("td", {}, h("span", { class: `level l-${r.level}` }, r.level)),
    h("td", { class: "nowrap" }, r.step || "edge"),
    h("td", { class: "msg" }, r.msg, r.data && Object.keys(r.data).length
      ? h("details", {}, h("summary", { class: "mono small" }, compact(r.data, 100)), r.data.traceback ? h("pre", { class: "traceback" }, r.data.traceback) : json(r.data))
      : null))))));
}

