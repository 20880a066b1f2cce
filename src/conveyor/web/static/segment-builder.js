// The segment builder: a condition as nested groups (all / any), Not, and predicates whose forms
// are built from the condition JSON Schema served with the workspace's vocabulary (fields, tags,
// lists, events, scores…). Every change is counted live (debounced; a stale request is aborted)
// with the same SQL as segment membership; the server's errors are shown on the predicate and
// the control they name. Plain DOM controls only: every step works with the keyboard.

const DEBOUNCE_MS = 300;
const KINDS = {
  event: "Performed an event",
  field: "Contact field",
  tags: "Has tags",
  list: "List subscription",
  segment: "In another segment",
  score: "Score",
  message: "Email engagement",
  automation: "In an automation",
  deal: "Has a deal",
};
const LABELS = {
  event: "Event", where: "Where its properties", count: "How many times", within: "Within the last",
  first: "First time", last: "Last time", aggregate: "Or compare an aggregate", property: "Property",
  op: "Operator", value: "Value", field: "Field", list: "List", status: "Status", segment: "Segment",
  score: "Score", message: "Email was", template: "Template", automation: "Automation", goal: "Goal",
  deal: "Deal", pipeline: "Pipeline", stage: "Stage", tag: "has the tag", tags_any: "has any of",
  tags_all: "has all of", gte: "at least", lte: "at most", eq: "exactly",
  within_last: "within the last", more_than_ago: "more than … ago", from: "From", to: "To",
};
const OPS = {
  eq: "is", ne: "is not", gt: "greater than", gte: "at least", lt: "less than", lte: "at most",
  between: "between (low, high)", in: "is one of (a, b)", not_in: "is none of (a, b)",
  contains: "contains", not_contains: "does not contain", starts_with: "starts with",
  ends_with: "ends with", is_set: "is set", is_empty: "is empty", exists: "exists",
  contains_any: "contains any of (a, b)", contains_all: "contains all of (a, b)",
  after: "after", before: "before", within_last: "within the last", within_next: "within the next",
  more_than_ago: "more than … ago", today: "is today", this_month: "is this month",
  anniversary: "anniversary is today",
};
const NO_VALUE = new Set(["is_set", "is_empty", "today", "this_month", "anniversary", "exists"]);
const LIST_OPS = new Set(["in", "not_in", "contains_any", "contains_all", "between"]);
// Which vocabulary feeds a property's picker; closed sets are selects, open ones datalists.
const PICKERS = {
  field: ["fields", true], list: ["lists", true], segment: ["segments", true],
  automation: ["automations", true], score: ["scores", true], template: ["templates", true],
  event: ["events", false], tag: ["tags", false], tags_any: ["tags", false],
  tags_all: ["tags", false], pipeline: ["pipelines", false],
};
const ORDER = {
  event: ["event", "where", "count", "within", "first", "last", "aggregate", "property", "op", "value"],
  field: ["field", "op", "value"],
  score: ["score", "op", "value"],
};

let uid = 0;
const nextId = (stem) => `${stem}-${++uid}`;
// Ids stay the same across re-renders (a node keeps its number), so focus can come back.
const idOf = (model) => (model.uid ??= ++uid);
const idPart = (path) => path.replace(/[^A-Za-z0-9_-]/g, "-") || "root";

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) if (child) el.append(child);
  return el;
}

function label(name) {
  return LABELS[name] || name.replace(/_/g, " ");
}

class Builder {
  constructor(root) {
    this.root = root;
    this.treeEl = root.querySelector("#tree");
    this.countEl = root.querySelector("[data-count]");
    this.statusEl = root.querySelector("#count-status");
    this.jsonEl = root.querySelector("#json");
    this.csrf = root.dataset.csrf;
    this.timer = null;
    this.inflight = null;
    this.nodes = [];
  }

  async start() {
    const response = await fetch(this.root.dataset.vocabulary, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      this.treeEl.textContent = "The builder could not load; reload the page.";
      return;
    }
    this.vocab = await response.json();
    this.defs = this.vocab.schema.$defs;
    // The predicates are the schema's: the known ones in a marketer's order, any new one after.
    const named = this.defs.condition.oneOf.map((ref) => ref.$ref.split("/").pop())
      .filter((k) => !["all", "any", "not"].includes(k));
    const order = [...Object.keys(KINDS).filter((k) => named.includes(k)), ...named.filter((k) => !(k in KINDS))];
    this.kinds = Object.fromEntries(order.map((k) => [k, KINDS[k] || label(k)]));
    const given = this.root.dataset.condition ? JSON.parse(this.root.dataset.condition) : null;
    this.tree = given ? this.fromJSON(given) : { type: "group", op: "all", items: [] };
    if (this.tree.type !== "group") this.tree = { type: "group", op: "all", items: [this.tree] };
    this.render();
    this.root.querySelector("#segment-form").addEventListener("submit", (e) => this.save(e));
    this.root.querySelector("#explain-form").addEventListener("submit", (e) => this.explain(e));
    this.changed();
  }

  // --- model <-> JSON -------------------------------------------------------------------------

  fromJSON(raw) {
    if (raw && Array.isArray(raw.all)) return { type: "group", op: "all", items: raw.all.map((r) => this.fromJSON(r)) };
    if (raw && Array.isArray(raw.any)) return { type: "group", op: "any", items: raw.any.map((r) => this.fromJSON(r)) };
    if (raw && raw.not) return { type: "not", item: this.fromJSON(raw.not) };
    const kind = ["tag", "tags_any", "tags_all"].some((k) => k in raw) ? "tags"
      : Object.keys(this.kinds).find((k) => k in raw) || "field";
    return { type: "pred", kind, data: { ...raw } };
  }

  // The condition for the server; each node remembers its path so errors find it. A group of
  // one is that one condition; an empty group is nothing.
  toJSON(node, path) {
    node.path = path;
    if (node.type === "group") {
      const kept = node.items.filter((item) => !this.isEmpty(item));
      if (kept.length === 0) return undefined;
      if (kept.length === 1) return this.toJSON(kept[0], path);
      const out = kept.map((item, i) => this.toJSON(item, join(path, `${node.op}.${i}`)));
      return { [node.op]: out };
    }
    if (node.type === "not") {
      const inner = this.toJSON(node.item, join(path, "not"));
      return inner === undefined ? undefined : { not: inner };
    }
    return node.data;
  }

  isEmpty(node) {
    if (node.type === "group") return node.items.every((item) => this.isEmpty(item));
    if (node.type === "not") return this.isEmpty(node.item);
    return false;
  }

  condition() {
    const clear = (node) => {
      node.path = undefined;
      if (node.type === "group") node.items.forEach(clear);
      if (node.type === "not") clear(node.item);
    };
    clear(this.tree);
    return this.toJSON(this.tree, "");
  }

  // --- rendering ------------------------------------------------------------------------------

  render(focusId) {
    this.nodes = [];
    this.treeEl.replaceChildren(this.renderNode(this.tree, null));
    if (focusId) {
      const el = document.getElementById(focusId);
      if (el) el.focus();
    }
  }

  rerender(focusId) {
    this.render(focusId);
    this.changed();
  }

  renderNode(node, parent) {
    this.nodes.push(node);
    if (node.type === "group") return this.renderGroup(node, parent);
    if (node.type === "not") return this.renderNot(node, parent);
    return this.renderPred(node, parent);
  }

  renderGroup(group, parent) {
    const opId = `g${idOf(group)}-op`;
    const addId = `g${idOf(group)}-add`;
    const box = h("div", { class: `group group-${group.op}`, role: "group", "aria-label": group === this.tree ? "All conditions" : "A group of conditions" });
    node(box, group);
    const head = h("div", { class: "group-head" },
      h("label", { for: opId, text: "Contacts who match" }),
      h("select", {
        id: opId, class: "group-op",
        onchange: (e) => { group.op = e.target.value; this.rerender(opId); },
      },
      h("option", { value: "all", text: "all of these", selected: group.op === "all" }),
      h("option", { value: "any", text: "any of these", selected: group.op === "any" })));
    if (parent) head.append(...this.nodeButtons(group, parent));
    const list = h("ol", { class: "group-items" });
    group.items.forEach((item) => list.append(h("li", {}, this.renderNode(item, group))));
    if (group.items.length === 0) list.append(h("li", { class: "muted none", text: "No condition yet: add one below." }));
    const kinds = h("select", { id: addId, "aria-label": "Kind of condition to add" },
      Object.entries(this.kinds).map(([k, text]) => h("option", { value: k, text })));
    const add = h("div", { class: "group-add" },
      kinds,
      h("button", {
        type: "button", class: "add-condition", text: "Add condition",
        onclick: () => {
          const kind = kinds.value;
          group.items.push({ type: "pred", kind, data: this.blank(kind) });
          this.rerender();
          this.focusLast(group);
        },
      }),
      h("button", {
        type: "button", class: "add-group", text: "Add group",
        onclick: () => {
          group.items.push({ type: "group", op: group.op === "all" ? "any" : "all", items: [] });
          this.rerender();
          this.focusLast(group);
        },
      }));
    box.append(head, list, add, h("p", { class: "field-error node-error", hidden: true }));
    return box;
  }

  focusLast(group) {
    const last = group.items[group.items.length - 1];
    const el = last && last.el && last.el.querySelector("select, input");
    if (el) el.focus();
  }

  renderNot(not, parent) {
    const box = h("div", { class: "not-box", role: "group", "aria-label": "Not" });
    node(box, not);
    const head = h("div", { class: "group-head" }, h("strong", { text: "Not" }),
      h("span", { class: "muted", text: "contacts who match:" }), ...this.nodeButtons(not, parent));
    box.append(head, this.renderNode(not.item, not), h("p", { class: "field-error node-error", hidden: true }));
    return box;
  }

  // Remove, and Not / un-Not, for any node in a group or a Not.
  nodeButtons(target, parent) {
    const describe = target.type === "pred" ? this.kinds[target.kind].toLowerCase() : target.type === "not" ? "not" : "group";
    const buttons = [];
    if (parent.type === "not") return buttons; // the Not's own buttons act on it
    if (target.type === "not") {
      buttons.push(h("button", {
        type: "button", class: "small link", text: "Remove Not", "aria-label": "Remove Not (keep its condition)",
        onclick: () => { replace(parent, target, target.item); this.rerender(); },
      }));
    } else {
      buttons.push(h("button", {
        type: "button", class: "small link", text: "Not", "aria-label": `Not: turn this ${describe} condition around`,
        onclick: () => { replace(parent, target, { type: "not", item: target }); this.rerender(); },
      }));
    }
    buttons.push(h("button", {
      type: "button", class: "small link danger-link", text: "Remove", "aria-label": `Remove this ${describe} condition`,
      onclick: () => {
        if (parent.type === "group") parent.items.splice(parent.items.indexOf(target), 1);
        else this.removeNot(parent);
        this.rerender();
      },
    }));
    return buttons;
  }

  removeNot(not) {
    const find = (node, parent) => {
      if (node === not) return parent;
      const kids = node.type === "group" ? node.items : node.type === "not" ? [node.item] : [];
      for (const kid of kids) {
        const found = find(kid, node);
        if (found) return found;
      }
      return null;
    };
    const parent = find(this.tree, null);
    if (parent && parent.type === "group") parent.items.splice(parent.items.indexOf(not), 1);
    else if (parent) this.removeNot(parent);
  }

  blank(kind) {
    if (kind === "tags") return { tag: "" };
    const picker = PICKERS[kind];
    const options = picker && picker[1] ? this.options(picker[0]) : [];
    const data = { [kind]: options.length ? options[0][0] : "" };
    if (kind === "message") data.message = "opened";
    if (kind === "deal") data.deal = {};
    return data;
  }

  options(name) {
    const given = this.vocab[name] || [];
    if (name === "fields") return given.map((f) => [f.key, f.standard ? f.label : `${f.label} (${f.key})`]);
    if (name === "segments") return given.map((s) => [s.key, s.name]);
    return given.map((v) => [v, v]);
  }

  renderPred(pred, parent) {
    const title = this.kinds[pred.kind];
    const box = h("fieldset", { class: `pred pred-${pred.kind}` });
    node(box, pred);
    box.append(h("legend", {}, h("span", { class: "pred-kind", text: title })));
    const def = this.defs[pred.kind];
    const body = h("div", { class: "pred-body" });
    const sync = () => {
      pred.data = this.readObject(body, def);
      this.changed();
    };
    this.idBase = `n${idOf(pred)}`;
    this.renderProps(body, def, pred.data, "", pred, sync);
    pred.data = this.readObject(body, def); // what the form shows is the condition
    box.append(body, h("div", { class: "pred-actions" }, ...this.nodeButtons(pred, parent)),
      h("p", { class: "field-error node-error", hidden: true }));
    return box;
  }

  // --- forms from the schema ------------------------------------------------------------------

  resolve(schema) {
    let s = schema || {};
    while (s.$ref) s = s.$ref.split("/").slice(1).reduce((o, k) => o[k], this.vocab.schema);
    return s;
  }

  renderProps(container, def, data, prefix, pred, sync) {
    def = this.resolve(def);
    if (def.maxProperties === 1 && def.properties) {
      container.append(this.renderChoice(def, data || {}, prefix, pred, sync));
      return;
    }
    const names = Object.keys(def.properties || {});
    const order = ORDER[pred.kind] && !prefix ? ORDER[pred.kind] : names;
    for (const name of order.filter((n) => names.includes(n))) {
      const schema = this.resolve(def.properties[name]);
      if (pred.kind === "field" && !prefix && name === "value" && NO_VALUE.has(data.op)) continue;
      if (pred.kind === "event" && !prefix && ["property", "op", "value"].includes(name) && !data.aggregate) continue;
      const required = (def.required || []).includes(name);
      container.append(this.renderProp(name, schema, data ? data[name] : undefined, join(prefix, name), pred, sync, required));
    }
  }

  renderProp(name, schema, value, path, pred, sync, required = false) {
    const id = `${this.idBase}-${idPart(path)}`;
    const wrap = h("div", { class: `prop prop-${name}`, "data-prop": path });
    const structural = () => {
      sync();
      this.rerender(id);
    };
    if (schema.type === "object" && schema.properties && schema.maxProperties !== 1) {
      const fs = h("fieldset", { class: "nested", "data-kind": "object", "data-name": name },
        h("legend", { text: label(name) }));
      this.renderProps(fs, schema, value || {}, path, pred, sync);
      wrap.append(fs);
      return wrap;
    }
    if (schema.type === "object" && schema.maxProperties === 1) {
      const fs = h("fieldset", { class: "nested inline", "data-kind": "object", "data-name": name },
        h("legend", { text: label(name) }));
      fs.append(this.renderChoice(schema, value || {}, path, pred, sync, true));
      wrap.append(fs);
      return wrap;
    }
    if (schema.type === "array" && schema.items && this.resolve(schema.items).type === "object") {
      return this.renderRows(name, schema, value || [], path, pred, sync);
    }
    wrap.append(h("label", { for: id, text: label(name) }));
    const enumOf = schema.enum || (schema.oneOf || []).map((v) => v.enum).find(Boolean);
    let control;
    if (name === "op" && pred.kind === "field" && !path.includes(".")) {
      const field = (this.vocab.fields || []).find((f) => f.key === pred.data.field);
      const ops = field ? this.vocab.ops[field.type] : schema.enum;
      control = this.select(id, ops.map((o) => [o, OPS[o] || o]), value ?? schema.default, false, structural);
    } else if (enumOf) {
      const ops = name === "op" || enumOf.every((o) => o in OPS && name === "op");
      control = this.select(id, enumOf.map((o) => [o, ops ? OPS[o] || o : o.replace(/_/g, " ")]),
        value ?? schema.default, !required && schema.default === undefined, name === "aggregate" ? structural : sync);
    } else if (PICKERS[name] && PICKERS[name][1] && path === name) {
      control = this.select(id, this.options(PICKERS[name][0]), value, false, name === "field" ? structural : sync);
    } else {
      const numeric = schema.type === "number" || schema.type === "integer";
      control = h("input", {
        id, type: numeric ? "number" : "text", step: numeric ? "any" : undefined,
        min: schema.minimum, value: value === undefined ? "" : display(value), autocomplete: "off",
        placeholder: placeholder(name, schema), oninput: sync,
      });
      if (PICKERS[name]) control.setAttribute("list", this.datalist(PICKERS[name][0]));
    }
    control.dataset.key = name;
    control.dataset.schema = JSON.stringify(schema);
    wrap.append(control);
    return wrap;
  }

  select(id, options, value, allowEmpty, onchange) {
    const el = h("select", { id, onchange });
    if (allowEmpty) el.append(h("option", { value: "", text: "—" }));
    for (const [v, text] of options) el.append(h("option", { value: v, text, selected: String(value) === String(v) }));
    return el;
  }

  datalist(name) {
    const id = `vocab-${name}`;
    if (!document.getElementById(id)) {
      document.body.append(h("datalist", { id }, this.options(name).map(([v]) => h("option", { value: v }))));
    }
    return id;
  }

  // An object of exactly one of its properties: a select of which, and that one's value.
  renderChoice(schema, value, path, pred, sync, optional = false) {
    const names = Object.keys(schema.properties);
    const chosen = names.find((n) => n in value) || (optional ? "" : names[0]);
    const id = `${this.idBase}-${idPart(path)}-which`;
    const row = h("div", { class: "choice", "data-kind": "choice" });
    const base = this.idBase;
    const show = (which, given) => {
      const old = row.querySelector(":scope > .prop");
      if (old) old.remove();
      if (!which) return;
      this.idBase = base;
      const inner = this.renderProp(which, this.resolve(schema.properties[which]), given, join(path, which), pred, sync, true);
      inner.querySelector("label").classList.add("sr-only");
      row.append(inner);
    };
    // Another choice swaps only its value's control (in place: focus stays on the select).
    const pick = this.select(id, names.map((n) => [n, label(n)]), chosen, optional, () => {
      show(pick.value, undefined);
      sync();
    });
    pick.dataset.choice = "1";
    pick.setAttribute("aria-label", path ? `${label(path.split(".").pop())}: which` : `${this.kinds[pred.kind]}: which`);
    row.append(pick);
    show(chosen, value[chosen]);
    return row;
  }

  renderRows(name, schema, rows, path, pred, sync) {
    const itemSchema = this.resolve(schema.items);
    const fs = h("fieldset", { class: "nested rows", "data-kind": "rows", "data-name": name, "data-prop": path },
      h("legend", { text: label(name) }));
    rows.forEach((row, i) => {
      const line = h("div", { class: "row-item", "data-kind": "row" });
      this.renderProps(line, itemSchema, row, join(path, String(i)), { kind: "_row" }, sync);
      line.append(h("button", {
        type: "button", class: "small link danger-link", text: "Remove", "aria-label": `Remove ${label(name).toLowerCase()} ${i + 1}`,
        onclick: () => { line.remove(); sync(); this.rerender(); },
      }));
      fs.append(line);
    });
    fs.append(h("button", {
      type: "button", class: "small", text: `Add ${name === "where" ? "a property filter" : "one"}`,
      onclick: () => {
        sync();
        const target = this.dig(pred.data, path);
        target.push({ property: "", op: "eq" });
        this.rerender();
        const lines = pred.el.querySelectorAll(`[data-name="${name}"] .row-item`);
        const last = lines[lines.length - 1];
        if (last) last.querySelector("input, select").focus();
      },
    }));
    return fs;
  }

  dig(data, path) {
    const parts = path.split(".");
    let here = data;
    for (const part of parts.slice(0, -1)) here = here[part] ??= {};
    const last = parts[parts.length - 1];
    if (!Array.isArray(here[last])) here[last] = [];
    return here[last];
  }

  // Read a form made by renderProps back into JSON: empty controls are left out.
  readObject(container, def) {
    def = this.resolve(def);
    const out = {};
    for (const child of container.children) this.readInto(child, out);
    return out;
  }

  readInto(el, out) {
    if (el.dataset.kind === "choice") {
      const pick = el.querySelector(":scope > select[data-choice]");
      const which = pick.value;
      const inner = el.querySelector(":scope > .prop");
      if (which && inner) {
        const value = this.readProp(inner);
        if (value !== undefined) out[which] = value;
      }
      return;
    }
    if (!el.classList || !el.classList.contains("prop")) {
      if (el.dataset && el.dataset.kind === "rows") this.readRows(el, out);
      return;
    }
    const inner = el.querySelector(":scope > [data-kind='rows']");
    if (inner) return this.readRows(inner, out);
    const key = el.dataset.prop.split(".").pop();
    const value = this.readProp(el);
    if (value !== undefined) out[key] = value;
  }

  readRows(fs, out) {
    const rows = [];
    for (const line of fs.querySelectorAll(":scope > .row-item")) {
      const item = {};
      for (const child of line.children) this.readInto(child, item);
      rows.push(item);
    }
    if (rows.length) out[fs.dataset.name] = rows;
  }

  readProp(wrap) {
    const nested = wrap.querySelector(":scope > fieldset[data-kind='object']");
    if (nested) {
      const obj = {};
      for (const child of nested.children) this.readInto(child, obj);
      // A nested object is kept when it says something (a deal with no filter is still a deal).
      return Object.keys(obj).length || nested.dataset.name === "deal" ? obj : undefined;
    }
    const control = wrap.querySelector(":scope > input, :scope > select");
    if (!control) return undefined;
    return coerce(control, JSON.parse(control.dataset.schema), this.fieldType(wrap));
  }

  fieldType(wrap) {
    const box = wrap.closest(".pred-field");
    if (!box || wrap.dataset.prop !== "value") return null;
    const field = box.querySelector("[data-key='field']");
    const op = box.querySelector("[data-key='op']");
    const found = (this.vocab.fields || []).find((f) => f.key === (field && field.value));
    return { type: found ? found.type : "text", op: op ? op.value : "eq" };
  }

  // --- the server ---------------------------------------------------------------------------

  changed() {
    const condition = this.condition();
    this.jsonEl.textContent = condition === undefined ? "{}" : JSON.stringify(condition, null, 2);
    clearTimeout(this.timer);
    if (this.inflight) this.inflight.abort();
    if (condition === undefined) {
      this.countEl.textContent = "—";
      this.statusEl.textContent = "Add a condition to count who meets it.";
      this.clearErrors();
      return;
    }
    this.statusEl.textContent = "Counting…";
    this.root.setAttribute("aria-busy", "true");
    this.timer = setTimeout(() => this.count(condition), DEBOUNCE_MS);
  }

  async post(url, body, signal) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": this.csrf },
      body: JSON.stringify(body),
      signal,
    });
    if (response.status === 401) throw new Error("Signed out: reload to sign in again.");
    const data = await response.json().catch(() => ({ detail: `error ${response.status}` }));
    return { ok: response.ok, status: response.status, data };
  }

  async count(condition) {
    const controller = new AbortController();
    this.inflight = controller;
    try {
      const { ok, data } = await this.post(this.root.dataset.count, { condition }, controller.signal);
      if (controller.signal.aborted) return;
      this.clearErrors();
      if (ok) {
        this.countEl.textContent = Number(data.count).toLocaleString("en-US");
        this.countEl.dataset.value = String(data.count);
        this.statusEl.textContent = "Counted now, as membership is decided.";
      } else {
        this.countEl.textContent = "—";
        this.statusEl.textContent = "Not counted: fix the condition marked below.";
        this.showErrors(data);
      }
    } catch (error) {
      if (error.name === "AbortError") return;
      this.statusEl.textContent = error.message || "Cannot reach Conveyor; change something to retry.";
    } finally {
      if (this.inflight === controller) {
        this.inflight = null;
        this.root.removeAttribute("aria-busy");
      }
    }
  }

  clearErrors() {
    for (const el of this.root.querySelectorAll(".node-error")) { el.hidden = true; el.textContent = ""; }
    for (const el of this.root.querySelectorAll("[aria-invalid='true']")) {
      el.removeAttribute("aria-invalid");
      if (el.getAttribute("aria-describedby")?.startsWith("error-")) el.removeAttribute("aria-describedby");
    }
    for (const id of ["segment-key-error", "form-error"]) {
      const el = this.root.querySelector(`#${id}`);
      el.hidden = true;
      el.textContent = "";
    }
  }

  // Put each error on the predicate (or group) its path names, and on the control inside it.
  showErrors(problem) {
    const errors = problem.errors || [{ field: problem.field || "", detail: problem.detail }];
    for (const { field, detail } of errors) {
      if (field === "key" || field === "name") {
        const el = this.root.querySelector("#segment-key-error");
        el.textContent = detail;
        el.hidden = false;
        this.root.querySelector(`#segment-${field}`).setAttribute("aria-invalid", "true");
        continue;
      }
      if (field === "condition" || !field.startsWith("condition")) {
        const el = this.root.querySelector("#form-error");
        el.textContent = field && field !== "condition" ? `${field}: ${detail}` : detail;
        el.hidden = false;
        continue;
      }
      const path = field.slice("condition.".length);
      let best = this.tree;
      for (const node of this.nodes) {
        if (node.path === undefined || !node.el) continue;
        if ((path === node.path || path.startsWith(`${node.path}.`) || node.path === "") && node.path.length >= (best.path || "").length) best = node;
      }
      const rest = best.path ? path.slice(best.path.length + 1) : path;
      const target = best.el;
      const message = target.querySelector(":scope > .node-error");
      message.id ||= nextId("error");
      message.textContent = rest ? `${rest.replace(/\./g, " › ")}: ${detail}` : detail;
      message.hidden = false;
      let control = null;
      for (let parts = rest.split("."); parts.length && !control; parts.pop()) {
        const prop = target.querySelector(`[data-prop="${CSS.escape(parts.join("."))}"]`);
        control = prop && prop.querySelector("input, select");
      }
      if (control) {
        control.setAttribute("aria-invalid", "true");
        control.setAttribute("aria-describedby", message.id);
      }
    }
  }

  async save(event) {
    event.preventDefault();
    const button = this.root.querySelector("#save");
    if (!button) return;
    const condition = this.condition();
    const body = {
      key: this.root.querySelector("#segment-key").value.trim(),
      name: this.root.querySelector("#segment-name").value.trim() || null,
      create: this.root.dataset.create === "true",
    };
    if (condition !== undefined) body.condition = condition;
    button.disabled = true;
    try {
      const { ok, data } = await this.post(this.root.dataset.save, body);
      this.clearErrors();
      if (ok) {
        window.location.assign(data.url);
        return;
      }
      this.showErrors(data);
      const first = this.root.querySelector("[aria-invalid='true']");
      if (first) first.focus();
    } catch (error) {
      const el = this.root.querySelector("#form-error");
      el.textContent = error.message;
      el.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  async explain(event) {
    event.preventDefault();
    const input = this.root.querySelector("#explain-contact");
    const error = this.root.querySelector("#explain-error");
    const out = this.root.querySelector("#explain-result");
    error.hidden = true;
    input.removeAttribute("aria-invalid");
    out.replaceChildren();
    const condition = this.condition();
    try {
      const { ok, data } = await this.post(this.root.dataset.explain, { contact: input.value, condition });
      if (!ok) {
        if (data.field === "contact" || !data.field || !data.field.startsWith("condition")) {
          error.textContent = data.field === "contact" ? data.errors[0].detail : data.detail;
          error.hidden = false;
          input.setAttribute("aria-invalid", "true");
        } else {
          this.showErrors(data);
        }
        return;
      }
      out.append(h("p", { class: `answer ${data.member ? "held" : "failed"}` },
        `${data.contact.label} would be `, h("strong", { text: data.member ? "in" : "not in" }), " this segment now."),
      h("ul", { class: "verdicts" }, verdict(data.explanation)));
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  }
}

function verdict(v) {
  const li = h("li", { class: `verdict ${v.ok ? "held" : "failed"}` },
    h("span", { class: "mark", "aria-hidden": "true", text: v.ok ? "✓" : "✗" }),
    h("span", { class: "sr-only", text: v.ok ? "holds: " : "does not hold: " }), ` ${v.why}`);
  if (v.children) li.append(h("ul", {}, v.children.map(verdict)));
  return li;
}

function node(el, model) {
  model.el = el;
}

function replace(parent, old, now) {
  if (parent.type === "group") parent.items[parent.items.indexOf(old)] = now;
  else parent.item = now;
}

function join(path, part) {
  return path ? `${path}.${part}` : part;
}

function display(value) {
  if (Array.isArray(value)) return value.join(", ");
  if (value && typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function placeholder(name, schema) {
  if (name === "within" || name === "within_last" || name === "more_than_ago" || schema.$ref === "#/$defs/duration") return "90 days";
  if (name === "property") return "e.g. total or cart.total";
  return undefined;
}

function allows(schema, type) {
  const variants = schema.oneOf || [schema];
  return variants.some((v) => v.type === type || (Array.isArray(v.type) && v.type.includes(type)) || (v.items && type === "array"));
}

function scalar(text, schema, fieldType) {
  if (fieldType) {
    if (fieldType.type === "number" && /^-?\d+(\.\d+)?$/.test(text)) return Number(text);
    if (fieldType.type === "boolean" && /^(true|false)$/i.test(text)) return text.toLowerCase() === "true";
    return text;
  }
  if (/^-?\d+(\.\d+)?$/.test(text) && (allows(schema, "number") || allows(schema, "integer"))) return Number(text);
  if (/^(true|false)$/.test(text) && allows(schema, "boolean")) return text === "true";
  return text;
}

// A control's text as the JSON its schema wants: numbers, true/false, "a, b" lists.
function coerce(control, schema, fieldType) {
  const text = control.value.trim();
  if (text === "") return undefined;
  if (control.type === "number") return Number(text);
  if (control.tagName === "SELECT") return text;
  const listy = fieldType ? LIST_OPS.has(fieldType.op) : allows(schema, "array") && (text.includes(",") || schema.type === "array");
  if (listy) return text.split(",").map((part) => scalar(part.trim(), schema.items || schema, fieldType)).filter((v) => v !== "");
  if (schema.oneOf && schema.oneOf.some((v) => v.type === "object") && text.startsWith("{")) {
    try { return JSON.parse(text); } catch { return text; }
  }
  return scalar(text, schema, fieldType);
}

const root = document.getElementById("builder");
if (root) new Builder(root).start();
