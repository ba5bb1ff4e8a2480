// #/endpoints: every HTTP step with its schema (from /__edge/openapi.json) and a request form.
import { h, clear, api, json, methodBadge, badge, traceLink, ms, empty, errorBox } from "./util.js";

const METHODS = ["get", "post", "put", "patch", "delete", "head", "options"];

export async function render(el, args, signal) {
  const doc = await api("/__edge/openapi.json", { signal });
  const ops = [];
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const m of METHODS) if (item[m]) ops.push({ path, method: m.toUpperCase(), op: item[m] });
  }
  if (!ops.length) {
    el.append(empty("No HTTP steps: add a step with an http trigger."));
    return;
  }
  ops.sort((a, b) => a.path.localeCompare(b.path) || METHODS.indexOf(a.method.toLowerCase()) - METHODS.indexOf(b.method.toLowerCase()));
  const list = h("div", { class: "endpoint-list" });
  el.append(h("p", { class: "muted intro" }, `${ops.length} route(s) · `, h("a", { href: "/__edge/openapi.json", target: "_blank" }, "openapi.json")), list);
  const open = args[0] || null;
  for (const item of ops) list.append(endpoint(item, open === item.op.operationId));
}

function endpoint({ path, method, op }, expanded) {
  const card = h("details", { class: "endpoint card", open: expanded || null, dataset: { op: op.operationId } });
  const params = op.parameters || [];
  const bodySchema = op.requestBody && op.requestBody.content["application/json"].schema;
  card.append(h("summary", {}, methodBadge(method), h("span", { class: "mono path" }, path),
    h("span", { class: "summary-text" }, op.summary || ""), h("span", { class: "op-name muted" }, op.operationId)));

  const inputs = {};
  const form = h("form", { class: "try" });
  for (const p of params) {
    inputs[p.name] = h("input", { name: p.name, placeholder: p.description || p.name, required: p.in === "path" || null });
    form.append(h("label", {}, h("span", {}, p.name, " ", badge(p.in, "muted")), inputs[p.name]));
  }
  let body = null;
  if (bodySchema) {
    body = h("textarea", { class: "mono", rows: 6, spellcheck: "false" });
    body.value = JSON.stringify(example(bodySchema), null, 2);
    form.append(h("label", { class: "wide" }, h("span", {}, "body (JSON)"), body));
  }
  const headers = h("textarea", { class: "mono", rows: 2, spellcheck: "false", placeholder: "x-trace-id: my-trace\nother-header: value" });
  form.append(h("label", { class: "wide" }, h("span", {}, "extra headers"), headers));
  const result = h("div", { class: "result" });
  const send = h("button", { type: "submit", class: "primary" }, `Send ${method}`);
  form.append(h("div", { class: "row" }, send));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    send.disabled = true;
    try {
      await sendRequest(method, path, params, inputs, body, headers.value, result);
    } finally {
      send.disabled = false;
    }
  });

  const schemas = h("div", { class: "schemas" });
  if (bodySchema) schemas.append(h("h3", {}, "Request body"), json(bodySchema));
  for (const [status, resp] of Object.entries(op.responses || {})) {
    const schema = resp.content && resp.content["application/json"] && resp.content["application/json"].schema;
    schemas.append(h("h3", {}, `Response ${status}`), schema ? json(schema) : h("p", { class: "muted" }, resp.description || "no schema"));
  }
  if (!bodySchema && !params.length) schemas.prepend(h("p", { class: "muted" }, "No parameters or body."));
  card.append(h("div", { class: "endpoint-body" }, h("div", {}, form, result), schemas));
  return card;
}

async function sendRequest(method, path, params, inputs, bodyEl, extraHeaders, result) {
  let url = path;
  const query = new URLSearchParams();
  for (const p of params) {
    const value = inputs[p.name].value;
    if (p.in === "path") url = url.replace(`{${p.name}}`, encodeURIComponent(value));
    else if (value !== "") query.set(p.name, value);
  }
  if ([...query].length) url += `?${query}`;
  const headers = {};
  for (const line of extraHeaders.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  let body;
  if (bodyEl && method !== "GET" && method !== "HEAD") {
    body = bodyEl.value;
    headers["content-type"] = "application/json";
  }
  clear(result).append(h("p", { class: "muted" }, "sending…"));
  const t0 = performance.now();
  let res;
  try {
    res = await fetch(url, { method, headers, body });
  } catch (err) {
    clear(result).append(errorBox(err));
    return;
  }
  const took = performance.now() - t0;
  const text = await res.text();
  let shown;
  try { shown = json(JSON.parse(text)); } catch { shown = h("pre", { class: "json" }, text || "(empty body)"); }
  const trace = res.headers.get("x-trace-id");
  clear(result).append(
    h("div", { class: "response-line" },
      h("span", { class: `status-code s${String(res.status)[0]}xx` }, `${res.status} ${res.statusText}`),
      h("span", { class: "muted" }, ms(took)),
      trace ? h("span", {}, "trace ", traceLink(trace)) : null),
    h("details", { class: "headers" }, h("summary", {}, `${[...res.headers].length} response headers`),
      h("table", { class: "table compact" }, h("tbody", {}, [...res.headers].map(([k, v]) =>
        h("tr", {}, h("td", { class: "mono" }, k), h("td", { class: "mono" }, v)))))),
    shown);
}

/** A small example value for a JSON Schema (enough to fill the form with something valid). */
function example(schema, depth = 0) {
  if (!schema || depth > 4) return null;
  if (schema.example !== undefined) return schema.example;
  if (schema.default !== undefined) return schema.default;
  if (schema.enum) return schema.enum[0];
  if (schema.const !== undefined) return schema.const;
  const alt = schema.anyOf || schema.oneOf;
  if (alt) return example(alt.find((x) => x.type !== "null") || alt[0], depth + 1);
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  switch (type) {
    case "object": {
      const out = {};
      const required = new Set(schema.required || []);
      for (const [k, v] of Object.entries(schema.properties || {})) {
        if (required.has(k) || !schema.required) out[k] = example(v, depth + 1);
      }
      return out;
    }
    case "array": return [example(schema.items, depth + 1)].filter((x) => x !== null);
    case "string": return schema.minLength > 4 ? "x".repeat(schema.minLength) : "text";
    case "integer": return schema.minimum ?? 0;
    case "number": return schema.minimum ?? 0;
    case "boolean": return false;
    default: return schema.properties ? example({ ...schema, type: "object" }, depth) : null;
  }
}
