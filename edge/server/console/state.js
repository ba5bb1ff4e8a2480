// #/state[/<group>[/<key>]]: state groups, their items, and an editor for one value.
import { h, clear, api, json, compact, empty, errorBox } from "./util.js";

const MAX_SHOWN = 500;

export async function render(el, args, signal) {
  const [group, key] = args;
  const { groups } = await api("/__edge/state", { signal });
  const side = h("nav", { class: "card list" }, h("h2", {}, "Groups"),
    groups.length ? h("ul", { class: "plain picks" }, groups.map((g) =>
      h("li", {}, h("a", { href: `#/state/${encodeURIComponent(g)}`, class: g === group ? "active" : "" }, g))))
      : empty("No state yet."));
  const mainEl = h("div", { class: "stack" });
  el.append(h("div", { class: "split" }, side, mainEl));
  if (!group) {
    mainEl.append(h("div", { class: "card" }, h("p", { class: "muted" }, groups.length ? "Pick a group." : "Steps write state with ctx.state.set(group, key, value)."), newItem(null)));
    return;
  }
  const { items } = await api("/__edge/state", { query: { group }, signal });
  const keys = Object.keys(items);
  const table = h("table", { class: "table" },
    h("thead", {}, h("tr", {}, h("th", {}, "key"), h("th", {}, "value"))),
    h("tbody", {}, keys.slice(0, MAX_SHOWN).map((k) => h("tr", { class: `clickable${k === key ? " selected" : ""}`, dataset: { key: k },
      onclick: () => { location.hash = `#/state/${encodeURIComponent(group)}/${encodeURIComponent(k)}`; } },
      h("td", { class: "mono nowrap" }, k), h("td", { class: "mono small" }, compact(items[k], 140))))));
  const listCard = h("div", { class: "card" }, h("h2", {}, group, h("span", { class: "count" }, String(keys.length))),
    keys.length > MAX_SHOWN ? h("p", { class: "muted" }, `showing the first ${MAX_SHOWN} of ${keys.length}`) : null,
    h("div", { class: "scroll-x" }, table));
  if (key !== undefined) mainEl.append(editor(group, key, items[key], signal));
  mainEl.append(listCard, h("div", { class: "card" }, newItem(group)));
}

function editor(group, key, value, signal) {
  const card = h("div", { class: "card editor" });
  const area = h("textarea", { class: "mono", rows: 14, spellcheck: "false", name: "value" });
  area.value = value === undefined ? "" : JSON.stringify(value, null, 2);
  const msg = h("div", { class: "form-msg" });
  const save = h("button", { class: "primary", type: "button" }, "Save");
  const del = h("button", { class: "danger", type: "button" }, "Delete");
  save.addEventListener("click", async () => {
    let parsed;
    try { parsed = JSON.parse(area.value); } catch (err) { clear(msg).append(errorBox(`not JSON: ${err.message}`)); return; }
    try {
      await api("/__edge/state", { method: "POST", body: { group, key, value: parsed } });
      clear(msg).append(h("span", { class: "ok-text" }, "saved"));
      // show the stored value (and the list) again, unless the user has moved on
      setTimeout(() => { if (!signal.aborted) window.dispatchEvent(new HashChangeEvent("hashchange")); }, 400);
    } catch (err) { clear(msg).append(errorBox(err)); }
  });
  del.addEventListener("click", async () => {
    if (!confirm(`Delete ${group} / ${key}?`)) return;
    try {
      await api("/__edge/state", { method: "DELETE", query: { group, key } });
      location.hash = `#/state/${encodeURIComponent(group)}`;
    } catch (err) { clear(msg).append(errorBox(err)); }
  });
  card.append(h("div", { class: "panel-head" }, h("h2", {}, h("span", { class: "muted" }, `${group} / `), key),
    h("a", { class: "button", href: `#/state/${encodeURIComponent(group)}` }, "Close")),
    value === undefined ? h("p", { class: "muted" }, "This key has no value (deleted?).") : json(value),
    h("label", { class: "wide" }, h("span", {}, "Edit as JSON"), area),
    h("div", { class: "row" }, save, del, msg));
  return card;
}

function newItem(group) {
  const g = h("input", { name: "group", placeholder: "group", value: group || "" });
  const k = h("input", { name: "key", placeholder: "key" });
  const v = h("input", { name: "value", placeholder: '{"any": "JSON"}', class: "mono grow" });
  const msg = h("div", { class: "form-msg" });
  const form = h("form", { class: "row inline-form" }, h("strong", {}, "New item"), g, k, v,
    h("button", { type: "submit" }, "Add"), msg);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let value;
    try { value = JSON.parse(v.value); } catch (err) { clear(msg).append(errorBox(`value is not JSON: ${err.message}`)); return; }
    try {
      await api("/__edge/state", { method: "POST", body: { group: g.value.trim(), key: k.value.trim(), value } });
      location.hash = `#/state/${encodeURIComponent(g.value.trim())}/${encodeURIComponent(k.value.trim())}`;
    } catch (err) { clear(msg).append(errorBox(err)); }
  });
  return form;
}
