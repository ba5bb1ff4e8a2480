// #/queues: per subscription depth / in flight / retrying, and the dead letters (redrive, delete);
// messages and dead letters of a step renamed or removed: move them to the dead letters, redrive
// them to the step that handles their work now (edge dlq orphans --move, edge dlq redrive --to).
import { h, clear, api, every, json, badge, traceLink, when, compact, empty, errorBox } from "./util.js";

export async function render(el, args, signal) {
  const subsBody = h("tbody", {});
  const extra = h("div", {});
  const deadBody = h("tbody", {});
  const msg = h("div", { class: "form-msg" });
  const redriveAll = h("button", { type: "button", class: "primary" }, "Redrive all");
  const deleteAll = h("button", { type: "button", class: "danger" }, "Delete all");
  const deadCount = h("span", { class: "count" }, "0");
  el.append(
    h("div", { class: "card flush" }, h("h2", { class: "pad" }, "Subscriptions"), h("div", { class: "scroll-x" }, h("table", { class: "table subs" },
      h("thead", {}, h("tr", {}, h("th", {}, "step"), h("th", {}, "topic"), h("th", {}, "type"), h("th", { class: "num" }, "depth"),
        h("th", { class: "num" }, "in flight"), h("th", { class: "num" }, "retrying"), h("th", { class: "num" }, "handled"), h("th", { class: "num" }, "failed attempts"))),
      subsBody)), extra),
    h("div", { class: "card flush" },
      h("div", { class: "panel-head pad" }, h("h2", {}, "Dead letters", deadCount), h("div", { class: "row" }, msg, redriveAll, deleteAll)),
      h("div", { class: "scroll-x" }, h("table", { class: "table dead" },
        h("thead", {}, h("tr", {}, h("th", {}, "id"), h("th", {}, "step ← topic"), h("th", {}, "error"), h("th", { class: "num" }, "attempts"),
          h("th", {}, "failed"), h("th", {}, "trace"), h("th", {}, "message"), h("th", {}, ""))),
        deadBody))));

  const act = async (fn, done) => {
    try {
      const out = await fn();
      clear(msg).append(h("span", { class: "ok-text" }, done(out)));
    } catch (err) {
      clear(msg).append(errorBox(err));
    }
    refresh().catch(() => {});  // the next tick shows it anyway
  };
  redriveAll.addEventListener("click", () => act(() => api("/__edge/dlq/redrive", { method: "POST", body: {} }),
    (out) => `redriven ${out.count}${out.skipped_count ? `, skipped ${out.skipped_count}` : ""}`));
  deleteAll.addEventListener("click", () => {
    if (!confirm("Delete every dead letter for good?")) return;
    act(() => api("/__edge/dlq", { method: "DELETE", query: { all: "true" } }), (out) => `deleted ${out.count}`);
  });

  const refresh = async () => {
    const [health, { dead_letters: dead }] = await Promise.all([
      api("/__edge/health", { signal }), api("/__edge/dlq", { query: { limit: 200 }, signal })]);
    const q = health.queues;
    clear(subsBody);
    clear(extra);
    if (!q || !q.subscriptions.length) subsBody.append(h("tr", {}, h("td", { colspan: 8 }, empty("No queue triggers in this app."))));
    for (const sub of (q ? q.subscriptions : [])) {
      subsBody.append(h("tr", { dataset: { step: sub.step, topic: sub.topic } },
        h("td", {}, h("strong", {}, sub.step)), h("td", { class: "mono", title: sub.topic }, topicName(sub.topic)), h("td", {}, sub.type),
        h("td", { class: "num" }, String(sub.depth)), h("td", { class: "num" }, String(sub.in_flight)),
        h("td", { class: "num" }, sub.retrying ? badge(String(sub.retrying), "warn") : "0"),
        h("td", { class: "num" }, String(sub.handled)), h("td", { class: "num" }, sub.failed_attempts ? badge(String(sub.failed_attempts), "err") : "0")));
    }
    if (q && Object.keys(q.unrouted || {}).length) extra.append(h("p", { class: "pad warn-text" }, "Emitted to topics nobody subscribes to: ", compact(q.unrouted)));
    if (q && Object.keys(q.orphaned || {}).length) {
      extra.append(h("p", { class: "pad warn-text" }, "Stored for steps that no longer subscribe: ", compact(q.orphaned), " ",
        h("button", { type: "button", class: "small", onclick: () => act(() => api("/__edge/dlq/orphans/move", { method: "POST", body: {} }),
          (out) => `moved ${out.moved} to the dead letters`) }, "Move to dead letters")));
    }
    // Where a dead letter of a step that no longer subscribes to its topic can go instead.
    const subs = q ? q.subscriptions : [];
    const live = new Set(subs.map((sub) => `${sub.step}\u0000${sub.topic}`));
    const targets = subs.filter((sub) => !sub.topic.startsWith("@"));
    deadCount.textContent = String(q ? q.dead_letters : dead.length);
    redriveAll.disabled = deleteAll.disabled = !dead.length;
    clear(deadBody);
    if (!dead.length) deadBody.append(h("tr", {}, h("td", { colspan: 8 }, empty("No dead letters."))));
    for (const d of dead) {
      deadBody.append(h("tr", { dataset: { id: d.id } },
        h("td", { class: "mono" }, String(d.id)),
        h("td", {}, h("strong", {}, d.step), h("div", { class: "mono small muted", title: d.topic }, topicName(d.topic))),
        h("td", { class: "err error-cell" }, d.error, d.error_id ? h("div", { class: "muted small" }, `error_id ${d.error_id}`) : null),
        h("td", { class: "num" }, String(d.attempts)),
        h("td", { class: "nowrap" }, when(d.failed_at)),
        h("td", {}, traceLink(d.trace_id)),
        h("td", { class: "data-cell" }, h("details", {}, h("summary", { class: "mono small" }, compact(d.data, 48)), json(d.data))),
        h("td", { class: "nowrap" },
          live.has(`${d.step}\u0000${d.topic}`) || !targets.length
            ? h("button", { type: "button", class: "small", onclick: () => act(() => api("/__edge/dlq/redrive", { method: "POST", body: { id: d.id } }),
              (out) => out.count ? `redriven #${d.id}` : `skipped #${d.id}: ${out.skipped[0]?.reason}`) }, "Redrive")
            : redriveTo(d, targets),
          " ",
          h("button", { type: "button", class: "small danger", onclick: () => {
            if (confirm(`Delete dead letter #${d.id} for good?`)) act(() => api("/__edge/dlq", { method: "DELETE", query: { id: d.id } }), () => `deleted #${d.id}`);
          } }, "Delete"))));
    }
  };
  every(2000, signal, refresh);

  /** A dead letter whose step no longer subscribes to its topic: pick the step that takes it now. */
  function redriveTo(d, targets) {
    const select = h("select", { name: "to", class: "small", title: `step "${d.step}" no longer subscribes to "${d.topic}"` },
      ...targets.map((sub, i) => h("option", { value: String(i) }, `${sub.step} ← ${sub.topic}`)));
    const go = () => {
      const sub = targets[Number(select.value)];
      act(() => api("/__edge/dlq/redrive", { method: "POST", body: { id: d.id, to: sub.step, topic: sub.topic } }),
        (out) => out.count ? `redriven #${d.id} to ${sub.step}` : `skipped #${d.id}: ${out.skipped[0]?.reason}`);
    };
    return h("span", { class: "row" }, select, h("button", { type: "button", class: "small", onclick: go }, "Redrive to"));
  }
}

/** State and stream triggers run through internal topics (``@state:0``): say what they are. */
function topicName(topic) {
  if (topic.startsWith("@state")) return "state changes";
  if (topic.startsWith("@stream")) return "stream changes";
  return topic;
}
