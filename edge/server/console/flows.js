// #/flows[/<flow>[/<step>]]: the steps of a flow as a diagram, and one step's details.
import { h, s, clear, api, json, badge, statusBadge, traceLink, when, ms, empty, errorBox, triggerText, methodBadge } from "./util.js";
import { appModel } from "./app.js";

const W = 260, GAP_X = 150, GAP_Y = 34, HEAD = 34, LINE = 24, PAD = 10, PILL_H = 30;
const NO_FLOW = "(no flow)";
const ALL = "(all)";

export async function render(el, args, signal) {
  const model = await appModel();
  const flows = [...model.flows];
  if (model.steps.some((st) => !st.flows.length)) flows.push(NO_FLOW);
  if (flows.length > 1) flows.push(ALL);
  const flow = flows.includes(args[0]) ? args[0] : flows[0];
  const selected = args[1] || null;
  if (!model.steps.length) {
    el.append(empty("No steps yet: add a *_step.py file under steps/."));
    return;
  }
  const steps = model.steps.filter((st) =>
    flow === ALL || (flow === NO_FLOW ? !st.flows.length : st.flows.includes(flow)));

  const tabs = h("div", { class: "tabs" }, flows.map((f) =>
    h("a", { href: `#/flows/${encodeURIComponent(f)}`, class: f === flow ? "active" : "" }, f,
      h("span", { class: "count" }, String(model.steps.filter((st) =>
        f === ALL || (f === NO_FLOW ? !st.flows.length : st.flows.includes(f))).length)))));
  const canvas = h("div", { class: "diagram card" });
  const panel = h("aside", { class: "panel card" });
  el.append(tabs, h("div", { class: "flow-layout" }, canvas, panel));
  canvas.append(diagram(steps, model, flow, selected));
  canvas.append(legend());
  const step = model.steps.find((st) => st.name === selected);
  if (step) await details(panel, step, model, signal);
  else panel.append(h("div", {}, h("h2", {}, flow), h("p", { class: "muted" }, `${steps.length} step(s). Click a step for its config, file and recent runs.`),
    streamsList(model)));
}

// -- layout ------------------------------------------------------------------------------------

function graph(steps, model) {
  const names = new Set(steps.map((st) => st.name));
  const nodes = new Map(steps.map((st) => [st.name, { id: st.name, step: st, kind: "step" }]));
  const edges = [];
  for (const [topic, t] of Object.entries(model.topics)) {
    const pubs = t.publishers.filter((p) => names.has(p.step));
    const subs = t.subscribers.filter((p) => names.has(p.step));
    if (!pubs.length && !subs.length) continue;
    let sources = pubs.map((p) => ({ id: p.step, virtual: p.virtual, label: p.label, conditional: p.conditional }));
    let targets = subs.map((p) => ({ id: p.step, virtual: p.virtual }));
    if (!sources.length) {
      const id = `topic:${topic}`;
      const outside = t.publishers.length ? `from ${t.publishers.map((p) => p.step).join(", ")}` : "emit / edge emit";
      nodes.set(id, { id, kind: "topic", topic, note: outside });
      sources = [{ id, virtual: false }];
    }
    if (!targets.length) {
      const id = `sink:${topic}`;
      const elsewhere = t.subscribers.length ? `to ${t.subscribers.map((p) => p.step).join(", ")}` : "no subscriber";
      nodes.set(id, { id, kind: "sink", topic, note: elsewhere, warn: !t.subscribers.length });
      targets = [{ id, virtual: false }];
    }
    for (const a of sources) for (const b of targets) {
      edges.push({ from: a.id, to: b.id, topic, label: a.label || topic, virtual: a.virtual || b.virtual, conditional: a.conditional });
    }
  }
  return { nodes, edges };
}

function layout(nodes, edges) {
  const out = new Map([...nodes.keys()].map((id) => [id, []]));
  for (const e of edges) out.get(e.from).push(e.to);
  // longest path from the sources; edges that close a cycle are ignored for ranking
  const rank = new Map();
  const visiting = new Set();
  const visit = (id) => {
    if (rank.has(id)) return rank.get(id);
    visiting.add(id);
    let r = 0;
    for (const e of edges) if (e.to === id && !visiting.has(e.from)) r = Math.max(r, visit(e.from) + 1);
    visiting.delete(id);
    rank.set(id, r);
    return r;
  };
  for (const id of nodes.keys()) visit(id);
  const layers = [];
  for (const [id, r] of rank) (layers[r] ||= []).push(id);
  const height = (n) => n.kind === "step" ? HEAD + PAD + LINE * Math.max(1, n.step.triggers.length) : PILL_H;
  // First column: steps that start something first, then the rest. Later columns: each node as
  // close as it can get to the middle of what feeds it, so most edges run straight.
  if (layers[0]) layers[0].sort((a, b) => (out.get(b).length > 0) - (out.get(a).length > 0) || a.localeCompare(b));
  const box = new Map();
  layers.forEach((layer, r) => {
    const x = 20 + r * (W + GAP_X);
    const wanted = layer.map((id) => {
      const n = nodes.get(id), hh = height(n);
      const feeds = edges.filter((e) => e.to === id && box.has(e.from)).map((e) => box.get(e.from));
      const y = feeds.length ? feeds.reduce((sum, b) => sum + b.y + b.h / 2, 0) / feeds.length - hh / 2 : 0;
      return { id, hh, y };
    });
    if (r > 0) wanted.sort((a, b) => a.y - b.y);
    let floor = 20;
    for (const w of wanted) {
      const y = Math.max(floor, r === 0 ? floor : w.y);
      box.set(w.id, { x, y, w: W, h: w.hh });
      floor = y + w.hh + GAP_Y;
    }
  });
  const heightAll = Math.max(...[...box.values()].map((b) => b.y + b.h), 0) + 20;
  return { box, width: 40 + layers.length * (W + GAP_X) - GAP_X, height: heightAll };
}

// -- drawing -----------------------------------------------------------------------------------

function diagram(steps, model, flow, selected) {
  const { nodes, edges } = graph(steps, model);
  const { box, width, height } = layout(nodes, edges);
  const svg = s("svg", { class: "flow", viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `flow ${flow}: ${steps.map((st) => st.name).join(", ")}` });
  // fit the card, but never shrink below 70% (then the card scrolls): labels stay readable
  svg.style.maxWidth = `${width}px`;
  svg.style.minWidth = `${Math.round(width * 0.7)}px`;
  svg.append(s("defs", {},
    s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      s("path", { d: "M0 0L10 5L0 10z", class: "arrow-head" }))));
  const edgeLayer = s("g", { class: "edges" });
  const labelLayer = s("g", { class: "edge-labels" });
  for (const e of edges) {
    const a = box.get(e.from), b = box.get(e.to);
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2;
    const back = x2 <= x1;
    const dx = back ? 140 : Math.max(40, (x2 - x1) / 2);
    const c1 = [x1 + dx, y1 + (back ? 80 : 0)], c2 = [x2 - dx, y2 + (back ? 80 : 0)];
    const d = `M${x1},${y1} C${c1[0]},${c1[1]} ${c2[0]},${c2[1]} ${x2 - 2},${y2}`;
    edgeLayer.append(s("path", { d, class: `edge${e.virtual ? " virtual" : ""}${e.conditional ? " conditional" : ""}`, "marker-end": "url(#arrow)", "data-topic": e.topic },
      s("title", {}, `${e.from} → ${e.to}: ${e.topic}${e.virtual ? " (virtual)" : ""}${e.conditional ? " (conditional)" : ""}`)));
    const mx = (x1 + 3 * c1[0] + 3 * c2[0] + x2) / 8, my = (y1 + 3 * c1[1] + 3 * c2[1] + y2) / 8;
    const text = e.label + (e.conditional ? " ?" : "");
    const tw = text.length * 6.6 + 14;
    labelLayer.append(s("g", { class: "edge-label", transform: `translate(${mx - tw / 2},${my - 10})` },
      s("rect", { width: tw, height: 20, rx: 10 }),
      s("text", { x: tw / 2, y: 14, "text-anchor": "middle" }, text)));
  }
  svg.append(edgeLayer);
  const nodeLayer = s("g", { class: "nodes" });
  for (const [id, n] of nodes) nodeLayer.append(n.kind === "step" ? stepNode(n.step, box.get(id), flow, selected) : topicNode(n, box.get(id)));
  svg.append(nodeLayer, labelLayer);
  return h("div", { class: "diagram-scroll" }, svg);
}

const TRIGGER_LABEL = { http: "HTTP", queue: "QUEUE", cron: "CRON", state: "STATE", stream: "STREAM" };

function stepNode(step, b, flow, selected) {
  const g = s("g", { class: `node${step.noop ? " noop" : ""}${step.name === selected ? " selected" : ""}`, transform: `translate(${b.x},${b.y})`,
    tabindex: 0, role: "link", "data-step": step.name });
  const go = () => { location.hash = `#/flows/${encodeURIComponent(flow)}/${encodeURIComponent(step.name)}`; };
  g.addEventListener("click", go);
  g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") go(); });
  g.append(s("title", {}, `${step.name}${step.description ? ` — ${step.description}` : ""}\n${step.file}`));
  g.append(s("rect", { class: "node-box", width: b.w, height: b.h, rx: 10 }));
  g.append(s("rect", { class: "node-head", width: b.w, height: HEAD, rx: 10 }), s("rect", { class: "node-head", y: HEAD - 10, width: b.w, height: 10 }));
  g.append(s("text", { class: "node-title", x: 12, y: 22 }, clip(step.name, 28)));
  if (step.noop) g.append(s("text", { class: "node-kind", x: b.w - 12, y: 22, "text-anchor": "end" }, "noop"));
  let y = HEAD + PAD;
  const triggers = step.triggers.length ? step.triggers : [{ type: "noop" }];
  for (const t of triggers) {
    const label = TRIGGER_LABEL[t.type] || "—";
    const text = t.type === "noop" ? "diagram only: no trigger" : triggerText(t);
    const lw = label.length * 6.4 + 10;
    g.append(s("rect", { class: `tag tag-${t.type}`, x: 10, y, width: lw, height: 17, rx: 4 }),
      s("text", { class: "tag-text", x: 10 + lw / 2, y: y + 12.5, "text-anchor": "middle" }, label),
      s("text", { class: "trigger-text", x: 18 + lw, y: y + 13 }, clip(text, Math.floor((b.w - lw - 28) / 6.6))));
    y += LINE;
  }
  return g;
}

function topicNode(n, b) {
  return s("g", { class: `topic-node ${n.kind}${n.warn ? " warn" : ""}`, transform: `translate(${b.x},${b.y})` },
    s("title", {}, `topic ${n.topic}: ${n.note}`),
    s("rect", { width: b.w, height: b.h, rx: b.h / 2 }),
    s("text", { x: 16, y: 19 }, clip(n.kind === "topic" ? `${n.topic}  ← ${n.note}` : `${n.topic}  → ${n.note}`, 36)));
}

function clip(text, n) {
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
}

function legend() {
  const line = (cls) => s("svg", { width: 40, height: 10 }, s("path", { d: "M2 5H36", class: `edge ${cls}` }));
  return h("div", { class: "legend" },
    h("span", {}, line(""), "enqueues → queue trigger (labelled with the topic)"),
    h("span", {}, line("virtual"), "virtual (diagram only)"),
    h("span", {}, h("span", { class: "tag-dot tag-http" }), "HTTP"), h("span", {}, h("span", { class: "tag-dot tag-queue" }), "queue"),
    h("span", {}, h("span", { class: "tag-dot tag-cron" }), "cron"), h("span", {}, h("span", { class: "tag-dot tag-state" }), "state"),
    h("span", {}, h("span", { class: "tag-dot tag-stream" }), "stream"));
}

// -- the side panel ------------------------------------------------------------------------------

function streamsList(model) {
  if (!model.streams.length) return null;
  return h("div", {}, h("h3", {}, "Streams"),
    h("ul", { class: "plain" }, model.streams.map((st) =>
      h("li", {}, h("a", { href: `#/streams/${encodeURIComponent(st.name)}` }, st.name), " ",
        badge(st.storage === "memory" ? "memory" : "stored", "muted"), st.description ? h("div", { class: "muted small" }, st.description) : null))));
}

async function details(panel, step, model, signal) {
  panel.append(h("div", {},
    h("div", { class: "panel-head" }, h("h2", {}, step.name), step.noop ? badge("noop", "muted") : null),
    step.description ? h("p", {}, step.description) : null,
    h("dl", { class: "facts" },
      h("dt", {}, "file"), h("dd", { class: "mono" }, step.file),
      h("dt", {}, "flows"), h("dd", {}, step.flows.length ? step.flows.join(", ") : "–"),
      step.dialect !== "1.0" ? [h("dt", {}, "dialect"), h("dd", {}, `Motia ${step.dialect}`)] : null),
    h("h3", {}, "Triggers"),
    step.triggers.length ? h("ul", { class: "plain triggers" }, step.triggers.map((t) => h("li", {}, triggerDetail(t)))) : h("p", { class: "muted" }, "none: drawn in the diagram only"),
    topicsDetail("Enqueues", step.enqueues, model, "subscribers"),
    topicsDetail("Virtual enqueues", step.virtualEnqueues, model, "subscribers"),
    step.virtualSubscribes.length ? [h("h3", {}, "Virtual subscribes"), h("p", {}, step.virtualSubscribes.join(", "))] : null,
    step.includeFiles.length ? [h("h3", {}, "Included files"), h("p", { class: "mono" }, step.includeFiles.join(", "))] : null,
    h("div", { class: "row" },
      h("a", { class: "button", href: `#/logs/step/${encodeURIComponent(step.name)}` }, "Logs of this step"),
      h("a", { class: "button", href: "#/flows" }, "Close"))));
  const runs = h("div", { class: "runs" }, h("p", { class: "muted" }, "loading…"));
  panel.append(h("h3", {}, "Recent runs"), runs);
  try {
    const { spans } = await api("/__edge/traces", { query: { step: step.name, limit: 15 }, signal });
    clear(runs);
    if (!spans.length) runs.append(empty("No runs yet."));
    else runs.append(h("table", { class: "table compact" },
      h("thead", {}, h("tr", {}, h("th", {}, "when"), h("th", {}, "took"), h("th", {}, "status"), h("th", {}, "trace"))),
      h("tbody", {}, spans.slice().reverse().map((sp) => h("tr", {},
        h("td", { class: "nowrap", title: sp.trigger }, when(sp.start)), h("td", { class: "num nowrap" }, ms(sp.duration_ms)),
        h("td", {}, statusBadge(sp.status), sp.error ? h("div", { class: "err small" }, sp.error) : null),
        h("td", {}, traceLink(sp.trace_id)))))));
  } catch (err) {
    clear(runs).append(errorBox(err));
  }
}

function triggerDetail(t) {
  const cond = t.condition ? badge("condition", "muted") : null;
  switch (t.type) {
    case "http":
      return [methodBadge(t.method), " ", h("span", { class: "mono" }, t.path), " ", cond,
        t.body_schema ? badge("body schema", "muted") : null, t.middleware ? badge(`${t.middleware} middleware`, "muted") : null,
        " ", h("a", { href: "#/endpoints", class: "small" }, "try it")];
    case "queue":
      return [badge("queue", "t-queue"), " ", h("span", { class: "mono" }, t.topic), " ", cond, json(t.config)];
    case "cron":
      return [badge("cron", "t-cron"), " ", h("strong", {}, t.words), " ", h("span", { class: "mono muted" }, `(${t.expression})`), cond,
        h("div", { class: "small muted" }, `time zone ${t.timezone || "of the device"}; missed: ${t.missed}`,
          t.next ? `; next ${new Date(t.next * 1000).toLocaleString()}` : "")];
    case "state":
      return [badge("state", "t-state"), " ", triggerText(t), " ", cond];
    case "stream":
      return [badge("stream", "t-stream"), " ", h("a", { href: `#/streams/${encodeURIComponent(t.streamName)}` }, triggerText(t)), " ", cond];
    default:
      return t.type;
  }
}

function topicsDetail(title, list, model, side) {
  if (!list.length) return null;
  return [h("h3", {}, title), h("ul", { class: "plain" }, list.map((e) => {
    const subs = (model.topics[e.topic] || { [side]: [] })[side].map((x) => x.step);
    return h("li", {}, h("span", { class: "mono" }, e.topic), e.label ? ` “${e.label}”` : "", e.conditional ? " (conditional)" : "",
      h("span", { class: "muted" }, subs.length ? ` → ${subs.join(", ")}` : " → no subscriber"));
  }))];
}
