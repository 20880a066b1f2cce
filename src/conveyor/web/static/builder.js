// The automation builder: a canvas of nodes and a YAML view of one definition, kept in sync.
// The palette and every form are drawn from the automation JSON Schema (the page embeds it);
// the server checks the definition with the same messages as `conveyor automation validate`
// and writes its YAML. No library, no build step: plain DOM and SVG.

const root = document.getElementById("builder");
const schema = JSON.parse(document.getElementById("builder-schema").textContent);
const start = JSON.parse(document.getElementById("builder-start").textContent);
const defs = schema.$defs;
const csrf = root.dataset.csrf;
const $ = (id) => document.getElementById(id);

const NODE_W = 210;
const LABELS = {
  all: "all of", any: "any of", not: "not", field: "field", tags: "tags", list: "list",
  event: "event", message: "message", automation: "automation", deal: "deal",
  segment: "segment", score: "score", duration: "a duration", property_filter: "filter",
};
const ORDER = ["key", "name", "triggers", "entry", "exit_when", "priority", "start", "nodes"];

let doc = start.definition || { key: "", name: "", triggers: [], nodes: [] };
if (!Array.isArray(doc.nodes)) doc.nodes = [];
let pos = {};
let selected = null; // a node's id, or null: the automation's own form
let draftId = start.draft;
let clipboard = null;
let connecting = null; // {id, path}: an output waiting for the node it leads to
let problems = [];
let yamlBroken = false;
const undo = [];
const redo = [];
let lastSnap = "";
let lastKey = null;
let lastTime = 0;
let fieldSeq = 0;

// --- schema helpers ---------------------------------------------------------------------------

function refName(s) {
  return s && s.$ref ? s.$ref.split("/").pop() : null;
}

function resolve(s) {
  let seen = 0;
  while (s && s.$ref && seen++ < 20) s = defs[refName(s)];
  return s || {};
}

const nodeTypes = defs.node.oneOf.map((r) => resolve(r));
const typeOf = (name) => nodeTypes.find((t) => t.properties.type.const === name);

function typeMatches(type, v) {
  const types = Array.isArray(type) ? type : [type];
  return types.some((t) =>
    t === "null" ? v === null
    : t === "array" ? Array.isArray(v)
    : t === "object" ? v !== null && typeof v === "object" && !Array.isArray(v)
    : t === "integer" ? Number.isInteger(v)
    : typeof v === t);
}

function matches(s0, v) {
  const s = resolve(s0);
  if (v === undefined) return false;
  if ("const" in s) return v === s.const;
  if (s.enum) return s.enum.includes(v);
  if (s.oneOf) return s.oneOf.some((alt) => matches(alt, v));
  if (s.type && !typeMatches(s.type, v)) return false;
  if (s.pattern && typeof v === "string" && !new RegExp(s.pattern).test(v)) return false;
  if (s.type === "object") {
    if ((s.required || []).some((k) => !(k in v))) return false;
    if (s.additionalProperties === false && Object.keys(v).some((k) => !(k in (s.properties || {})))) return false;
  }
  return true;
}

function altLabel(alt) {
  const s = resolve(alt);
  const ref = refName(alt);
  if (ref && LABELS[ref]) return LABELS[ref];
  if (s.title) return s.title;
  if ("const" in s) return String(s.const).replace(/_/g, " ");
  if (s.required && s.required.length) return s.required[0].replace(/_/g, " ");
  if (s.type === "null") return "any";
  if (s.type === "array") return "with filters";
  if (s.type === "string") return "text";
  if (s.type === "object") return "a mapping";
  return String(s.type || "value");
}

function blank(alt) {
  const s = resolve(alt);
  if ("const" in s) return s.const;
  if (s.oneOf) return blank(s.oneOf[0]);
  if (s.enum) return s.enum[0];
  const type = Array.isArray(s.type) ? s.type[0] : s.type;
  if (type === "null") return null;
  if (type === "object") {
    const out = {};
    for (const k of s.required || []) out[k] = blank(s.properties[k]);
    return out;
  }
  if (type === "array") return [];
  if (type === "boolean") return true;
  if (type === "number" || type === "integer") return 0;
  return "";
}

function human(key) {
  const text = String(key).replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// --- the definition ---------------------------------------------------------------------------

function getIn(path) {
  let v = doc;
  for (const p of path) {
    if (v === undefined || v === null) return undefined;
    v = v[p];
  }
  return v;
}

function setIn(path, value) {
  let parents = [doc];
  let v = doc;
  for (const p of path.slice(0, -1)) {
    if (v[p] === undefined || v[p] === null || typeof v[p] !== "object") v[p] = typeof p === "number" ? [] : {};
    v = v[p];
    parents.push(v);
  }
  const last = path[path.length - 1];
  if (value === undefined) {
    if (Array.isArray(v)) v.splice(last, 1);
    else delete v[last];
    // an optional mapping left empty is no mapping at all (not inside a list, nor a node)
    for (let i = path.length - 1; i > 0; i--) {
      const holder = parents[i - 1];
      const key = path[i - 1];
      const here = holder[key];
      if (Array.isArray(holder) || path[0] === "nodes" && i <= 2) break;
      if (here && typeof here === "object" && !Array.isArray(here) && !Object.keys(here).length) delete holder[key];
      else break;
    }
  } else {
    v[last] = value;
  }
}

function follows(node) {
  const t = typeOf(node.type);
  return t ? t["x-follows"] !== false : true;
}

function refFields(node) {
  // the outputs of a node: [path under the node, label]
  const t = typeOf(node.type);
  if (!t) return [];
  const out = [];
  for (const [key, s] of Object.entries(t.properties)) {
    if (refName(s) === "node_ref" && (key !== "next" || follows(node))) out.push([[key], key === "next" ? "next" : key.replace(/_/g, " ")]);
  }
  if (t.properties.paths && Array.isArray(node.paths)) {
    node.paths.forEach((p, i) => out.push([["paths", i, "next"], p.name || `path ${i + 1}`]));
  }
  return out;
}

function edges() {
  const out = [];
  doc.nodes.forEach((node, i) => {
    for (const [path, label] of refFields(node)) {
      let target = path.reduce((v, p) => (v == null ? undefined : v[p]), node);
      let implicit = false;
      if (path[0] === "next" && path.length === 1 && target === undefined) {
        target = doc.nodes[i + 1] && doc.nodes[i + 1].id;
        implicit = true;
      }
      if (target && target !== "end") out.push({ from: node.id, to: target, label, implicit });
    }
  });
  return out;
}

function exported() {
  // the definition as saved: keys in a reader's order
  const out = {};
  for (const key of ORDER) if (doc[key] !== undefined && key !== "nodes") out[key] = doc[key];
  for (const [key, value] of Object.entries(doc)) if (!(key in out) && key !== "nodes") out[key] = value;
  out.nodes = doc.nodes.map((node) => {
    const t = typeOf(node.type);
    const n = { id: node.id, type: node.type };
    if (node.name) n.name = node.name;
    const keys = t ? Object.keys(t.properties) : Object.keys(node);
    for (const key of [...keys, ...Object.keys(node)]) {
      if (["id", "type", "name", "next"].includes(key) || key in n || node[key] === undefined) continue;
      n[key] = node[key];
    }
    // `next` as the marketer set it: left unset, a node leads on to the one below
    if (node.next !== undefined) n.next = node.next;
    return n;
  });
  return JSON.parse(JSON.stringify(out));
}

function uniqueId(base) {
  const taken = new Set(doc.nodes.map((n) => n.id));
  for (let i = 1; ; i++) if (!taken.has(`${base}-${i}`)) return `${base}-${i}`;
}

function renameRefs(from, to) {
  for (const node of doc.nodes) {
    for (const [path] of refFields(node)) {
      const holder = path.slice(0, -1).reduce((v, p) => v && v[p], node);
      const key = path[path.length - 1];
      if (holder && holder[key] === from) {
        if (to === undefined) delete holder[key];
        else holder[key] = to;
      }
    }
  }
  if (doc.start === from) doc.start = to;
}

// --- history ----------------------------------------------------------------------------------

const snap = () => JSON.stringify({ doc, pos, selected });

function commit(key = null) {
  const now = snap();
  if (now === lastSnap) return;
  const coalesce = key && key === lastKey && Date.now() - lastTime < 1500;
  if (!coalesce) {
    undo.push(lastSnap);
    if (undo.length > 200) undo.shift();
  }
  redo.length = 0;
  lastSnap = now;
  lastKey = key;
  lastTime = Date.now();
  scheduleCheck();
}

function restore(text) {
  const state = JSON.parse(text);
  doc = state.doc;
  pos = state.pos;
  selected = state.selected && doc.nodes.some((n) => n.id === state.selected) ? state.selected : null;
  lastSnap = text;
  lastKey = null;
  renderAll();
  scheduleCheck();
}

function undoOnce() {
  if (!undo.length) return say("Nothing to undo.");
  redo.push(snap());
  restore(undo.pop());
  say("Undone.");
}

function redoOnce() {
  if (!redo.length) return say("Nothing to redo.");
  undo.push(snap());
  restore(redo.pop());
  say("Redone.");
}

function say(text) {
  $("builder-said").textContent = text;
}

// --- layout -----------------------------------------------------------------------------------

function layout(only = null) {
  // layers by distance from the first node; nodes no edge reaches go below
  const depth = {};
  const first = doc.start || (doc.nodes[0] && doc.nodes[0].id);
  const out = {};
  for (const e of edges()) (out[e.from] = out[e.from] || []).push(e.to);
  const queue = first ? [[first, 0]] : [];
  while (queue.length) {
    const [id, d] = queue.shift();
    if (id in depth || !doc.nodes.some((n) => n.id === id)) continue;
    depth[id] = d;
    for (const to of out[id] || []) queue.push([to, d + 1]);
  }
  let extra = Math.max(-1, ...Object.values(depth)) + 1;
  const perLayer = {};
  for (const node of doc.nodes) {
    if (only && pos[node.id] && !only.has(node.id)) continue;
    const d = node.id in depth ? depth[node.id] : extra++;
    const i = (perLayer[d] = (perLayer[d] || 0) + 1) - 1;
    pos[node.id] = { x: 24 + i * (NODE_W + 40), y: 24 + d * 140 };
  }
}

function placeNew(id) {
  const anchor = selected && pos[selected];
  const lowest = Math.max(-116, ...Object.values(pos).map((p) => p.y));
  pos[id] = anchor ? { x: anchor.x, y: anchor.y + 140 } : { x: 24, y: lowest + 140 };
  while (Object.entries(pos).some(([k, p]) => k !== id && Math.abs(p.x - pos[id].x) < 40 && Math.abs(p.y - pos[id].y) < 40)) {
    pos[id] = { x: pos[id].x + NODE_W + 40, y: pos[id].y };
  }
}

// --- canvas -----------------------------------------------------------------------------------

function summary(node) {
  const bits = [];
  for (const key of ["template", "for", "timeout", "tag", "list", "field", "url", "automation", "title", "pipeline"]) {
    if (typeof node[key] === "string" && node[key]) bits.push(`${key.replace(/_/g, " ")}: ${node[key]}`);
  }
  if (node.condition && typeof node.condition === "object") {
    const kind = Object.keys(node.condition)[0];
    const value = node.condition[kind];
    bits.push(`if ${kind}${typeof value === "string" ? ` ${value}` : ""}`);
  }
  return bits.slice(0, 2).join(" · ");
}

function nodeProblems(index) {
  return problems.filter((p) => p.path === `nodes.${index}` || p.path.startsWith(`nodes.${index}.`));
}

function renderCanvas() {
  const list = $("nodes");
  // a redraw (say, when a check comes back) keeps the keyboard where it was
  const active = document.activeElement;
  const within = active && list.contains(active) ? active.closest("li.node") : null;
  const keep = within ? { id: within.dataset.id, port: active.dataset.port } : null;
  list.replaceChildren();
  doc.nodes.forEach((node, i) => {
    if (!pos[node.id]) placeNew(node.id);
    const t = typeOf(node.type);
    const li = document.createElement("li");
    li.className = `node cat-${t ? t["x-category"] : "flow"}`;
    li.dataset.id = node.id;
    li.style.left = `${pos[node.id].x}px`;
    li.style.top = `${pos[node.id].y}px`;
    if (node.id === selected) li.classList.add("selected");
    const bad = nodeProblems(i);
    if (bad.length) li.classList.add("invalid");
    const main = document.createElement("button");
    main.type = "button";
    main.className = "node-main";
    main.dataset.node = node.id;
    main.setAttribute("aria-pressed", String(node.id === selected));
    const kind = document.createElement("span");
    kind.className = "node-type";
    kind.textContent = t ? t.title : node.type;
    const name = document.createElement("span");
    name.className = "node-id";
    name.textContent = node.name || node.id;
    const detail = document.createElement("span");
    detail.className = "node-summary";
    detail.textContent = summary(node);
    main.append(kind, " ", name, " ", detail);
    if (bad.length) {
      const flag = document.createElement("span");
      flag.className = "sr-only";
      flag.textContent = " (has a problem)";
      main.append(flag);
    }
    li.append(main);
    for (const p of bad) {
      const err = document.createElement("p");
      err.className = "node-error";
      err.textContent = p.text;
      li.append(err);
    }
    const ports = document.createElement("div");
    ports.className = "ports";
    for (const [path, label] of refFields(node)) {
      const port = document.createElement("button");
      port.type = "button";
      port.className = "port";
      port.dataset.port = path.join(".");
      port.textContent = `${label} →`;
      port.setAttribute("aria-label", `Connect ${label} of ${node.id}`);
      if (connecting && connecting.id === node.id && connecting.path.join(".") === path.join(".")) port.classList.add("armed");
      ports.append(port);
    }
    if (ports.childElementCount) li.append(ports);
    list.append(li);
  });
  root.classList.toggle("connecting", Boolean(connecting));
  if (keep) {
    const li = list.querySelector(`li[data-id="${CSS.escape(keep.id)}"]`);
    const again = li && (keep.port ? li.querySelector(`button.port[data-port="${CSS.escape(keep.port)}"]`) : li.querySelector("button.node-main"));
    if (again) again.focus();
  }
  requestAnimationFrame(drawEdges);
}

function drawEdges() {
  const svg = $("edges");
  const box = {};
  let maxX = 600;
  let maxY = 400;
  for (const li of $("nodes").children) {
    const p = pos[li.dataset.id];
    box[li.dataset.id] = { x: p.x, y: p.y, w: li.offsetWidth, h: li.offsetHeight };
    maxX = Math.max(maxX, p.x + li.offsetWidth + 40);
    maxY = Math.max(maxY, p.y + li.offsetHeight + 60);
  }
  const canvas = $("canvas");
  canvas.style.width = `${maxX}px`;
  canvas.style.height = `${maxY}px`;
  svg.setAttribute("width", maxX);
  svg.setAttribute("height", maxY);
  const parts = ['<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>'];
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  for (const e of edges()) {
    const a = box[e.from];
    const b = box[e.to];
    if (!a || !b) continue;
    const x1 = a.x + a.w / 2;
    const y1 = a.y + a.h;
    const x2 = b.x + b.w / 2;
    const y2 = b.y;
    const bend = Math.max(40, Math.abs(y2 - y1) / 2);
    const d = y2 > y1
      ? `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2}`
      : `M${x1},${y1} C${x1 + 160},${y1 + 80} ${x2 + 160},${y2 - 80} ${x2},${y2}`;
    parts.push(`<path d="${d}" class="edge${e.implicit ? " implicit" : ""}" marker-end="url(#arrow)"/>`);
    if (e.label !== "next") parts.push(`<text x="${(x1 + x2) / 2 + 6}" y="${(y1 + y2) / 2}" class="edge-label">${esc(e.label)}</text>`);
  }
  svg.innerHTML = parts.join("");
}

// --- forms ------------------------------------------------------------------------------------

function fieldBox(path, labelText, control, { legend = false } = {}) {
  const wrap = document.createElement(legend ? "fieldset" : "div");
  wrap.className = "field";
  wrap.dataset.path = path.join(".");
  const id = control && control.id;
  if (legend) {
    const lg = document.createElement("legend");
    lg.textContent = labelText;
    wrap.append(lg);
  } else {
    const label = document.createElement("label");
    label.textContent = labelText;
    if (id) label.htmlFor = id;
    wrap.append(label);
  }
  if (control) wrap.append(control);
  const err = document.createElement("p");
  err.className = "field-error";
  err.id = `err-${++fieldSeq}`;
  wrap.append(err);
  if (control && control.setAttribute) control.setAttribute("aria-describedby", err.id);
  return wrap;
}

function newId() {
  return `f${++fieldSeq}`;
}

function changed(path, value, { structural = false } = {}) {
  setIn(path, value);
  commit(path.join("."));
  renderCanvas();
  if (structural) renderInspector();
}

function nodeSelect(path, required) {
  const select = document.createElement("select");
  select.id = newId();
  const own = path[0] === "nodes" ? doc.nodes[path[1]] : null;
  const index = own ? path[1] : -1;
  const isNext = path[path.length - 1] === "next" && path.length === 3;
  const below = doc.nodes[index + 1];
  const options = [["", isNext ? (below ? `the node below (${below.id})` : "end (the last node)") : required ? "choose a node" : "not set"]];
  for (const n of doc.nodes) if (!own || n.id !== own.id) options.push([n.id, n.id]);
  options.push(["end", "end"]);
  const current = getIn(path);
  for (const [value, text] of options) {
    const o = new Option(text, value, false, (current ?? "") === value);
    select.add(o);
  }
  select.addEventListener("change", () => changed(path, select.value || undefined));
  return select;
}

function coerce(text) {
  if (text === "") return undefined;
  if (text === "true") return true;
  if (text === "false") return false;
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  return text;
}

function render(s0, path, label, required) {
  const ref = refName(s0);
  const s = resolve(s0);
  const value = getIn(path);
  if (ref === "node_ref") return fieldBox(path, label, nodeSelect(path, required));
  if (ref === "duration" && (value === undefined || typeof value === "string")) {
    const input = document.createElement("input");
    input.id = newId();
    input.value = value ?? "";
    input.placeholder = "e.g. 1 hour, 3 days";
    input.addEventListener("input", () => changed(path, input.value || (required ? "" : undefined)));
    return fieldBox(path, label, input);
  }
  if (s.oneOf) return renderChoice(s, path, label, required);
  if (s.enum) {
    const select = document.createElement("select");
    select.id = newId();
    if (!required) select.add(new Option(s.default !== undefined ? `not set (${s.default})` : "not set", ""));
    for (const v of s.enum) select.add(new Option(String(v).replace(/_/g, " "), JSON.stringify(v), false, value === v));
    if (value === undefined) select.value = "";
    select.addEventListener("change", () => changed(path, select.value ? JSON.parse(select.value) : undefined));
    return fieldBox(path, label, select);
  }
  if ("const" in s) return null;
  if (s.type === "object") return renderObject(s, path, label);
  if (s.type === "array") return renderArray(s, path, label);
  if (s.type === "boolean") {
    const input = document.createElement("input");
    input.type = "checkbox";
    input.id = newId();
    input.checked = value === true;
    input.addEventListener("change", () => changed(path, input.checked ? true : undefined));
    const box = fieldBox(path, label, input);
    box.classList.add("check");
    return box;
  }
  if (s.type === "null") return null;
  const input = document.createElement("input");
  input.id = newId();
  if (s.type === "number" || s.type === "integer") {
    input.type = "number";
    input.step = s.type === "integer" ? "1" : "any";
    input.value = value ?? "";
    input.addEventListener("input", () => changed(path, input.value === "" ? undefined : Number(input.value)));
  } else if (s.type === "string") {
    input.value = value ?? "";
    input.addEventListener("input", () => changed(path, input.value === "" && !required ? undefined : input.value));
  } else {
    input.value = value === undefined ? "" : typeof value === "object" ? JSON.stringify(value) : String(value);
    if (s.description) input.placeholder = s.description;
    input.addEventListener("input", () => {
      let v = coerce(input.value);
      if (typeof v === "string" && /^[[{]/.test(v)) {
        try { v = JSON.parse(v); } catch { /* text until it is JSON */ }
      }
      changed(path, v);
    });
  }
  if (s.description && !input.placeholder) input.placeholder = s.description;
  return fieldBox(path, label, input);
}

function renderChoice(s, path, label, required) {
  const value = getIn(path);
  const alts = s.oneOf;
  // a constant that is the value wins over a pattern or a type that also takes it
  let chosen = alts.findIndex((alt) => "const" in resolve(alt) && resolve(alt).const === value);
  if (chosen < 0) chosen = alts.findIndex((alt) => matches(alt, value));
  const wrap = document.createElement("div");
  const select = document.createElement("select");
  select.id = newId();
  if (!required || value === undefined) select.add(new Option(required ? "choose…" : "none", "-1"));
  alts.forEach((alt, i) => select.add(new Option(altLabel(alt), String(i))));
  if (value !== undefined && chosen < 0) chosen = 0;
  select.value = String(value === undefined ? -1 : Math.max(0, chosen));
  select.addEventListener("change", () => {
    const i = Number(select.value);
    changed(path, i < 0 ? undefined : blank(alts[i]), { structural: true });
  });
  const box = fieldBox(path, label, select);
  box.classList.add("choice");
  wrap.append(box);
  if (value !== undefined && chosen >= 0) {
    const inner = render(alts[chosen], path, `${label}: ${altLabel(alts[chosen])}`, true);
    if (inner) {
      inner.classList.add("nested");
      box.append(inner);
    }
  }
  return box;
}

function renderObject(s, path, label) {
  const props = s.properties || {};
  const value = getIn(path);
  const keys = Object.keys(props);
  if (s.minProperties === 1 && s.maxProperties === 1 && !(s.required || []).length) {
    // one of its keys: {eq: 1}, {within_last: 30 days}, {tag: vip}
    const current = value && typeof value === "object" ? Object.keys(value)[0] : undefined;
    const select = document.createElement("select");
    select.id = newId();
    select.add(new Option("not set", ""));
    for (const k of keys) select.add(new Option(k.replace(/_/g, " "), k, false, k === current));
    if (current === undefined) select.value = "";
    select.addEventListener("change", () => {
      const k = select.value;
      changed(path, k ? { [k]: blank(props[k]) } : undefined, { structural: true });
    });
    const box = fieldBox(path, label, select);
    if (current !== undefined) {
      const inner = render(props[current], [...path, current], `${label}: ${current.replace(/_/g, " ")}`, true);
      if (inner) box.append(inner);
    }
    return box;
  }
  const box = fieldBox(path, label, null, { legend: true });
  const err = box.querySelector(".field-error");
  for (const k of keys) {
    const inner = render(props[k], [...path, k], human(k), (s.required || []).includes(k));
    if (inner) box.insertBefore(inner, err);
  }
  return box;
}

function renderArray(s, path, label) {
  const items = s.items || {};
  const r = resolve(items);
  const value = Array.isArray(getIn(path)) ? getIn(path) : [];
  if (r.enum) {
    const box = fieldBox(path, label, null, { legend: true });
    for (const option of r.enum) {
      const input = document.createElement("input");
      input.type = "checkbox";
      input.id = newId();
      input.checked = value.includes(option);
      input.addEventListener("change", () => {
        const now = r.enum.filter((o) => (o === option ? input.checked : value.includes(o)));
        changed(path, now.length ? now : undefined);
      });
      const l = document.createElement("label");
      l.className = "check";
      l.append(input, ` ${option}`);
      box.insertBefore(l, box.querySelector(".field-error"));
    }
    return box;
  }
  if (r.type === "string") {
    const area = document.createElement("textarea");
    area.id = newId();
    area.rows = 3;
    area.value = value.join("\n");
    area.placeholder = "one per line";
    area.addEventListener("input", () => {
      const lines = area.value.split("\n").map((x) => x.trim()).filter(Boolean);
      changed(path, lines.length ? lines : undefined);
    });
    return fieldBox(path, `${label} (one per line)`, area);
  }
  const box = fieldBox(path, label, null, { legend: true });
  const err = box.querySelector(".field-error");
  value.forEach((_, i) => {
    const item = render(items, [...path, i], `${label.replace(/s$/, "")} ${i + 1}`, true);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link";
    remove.textContent = `Remove ${label.replace(/s$/, "").toLowerCase()} ${i + 1}`;
    remove.addEventListener("click", () => {
      const now = value.filter((__, j) => j !== i);
      changed(path, now.length || path.length === 1 ? now : undefined, { structural: true });
    });
    const row = document.createElement("div");
    row.className = "array-item";
    if (item) row.append(item);
    row.append(remove);
    box.insertBefore(row, err);
  });
  const add = document.createElement("button");
  add.type = "button";
  add.textContent = `Add ${label.replace(/s$/, "").toLowerCase()}`;
  add.addEventListener("click", () => changed(path, [...value, blank(items)], { structural: true }));
  box.insertBefore(add, err);
  return box;
}

function renderInspector() {
  fieldSeq = 0;
  const box = $("inspector");
  box.replaceChildren();
  const index = doc.nodes.findIndex((n) => n.id === selected);
  if (index < 0) {
    selected = null;
    $("inspector-title").textContent = "Automation";
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = "Its key, name, triggers and entry rules. Select a node to edit it.";
    box.append(note);
    for (const key of ORDER) {
      if (key === "nodes") continue;
      const s = schema.properties[key];
      const field = render(s, [key], human(key), (schema.required || []).includes(key));
      if (field) box.append(field);
    }
  } else {
    const node = doc.nodes[index];
    const t = typeOf(node.type);
    $("inspector-title").textContent = `${t ? t.title : node.type}: ${node.id}`;
    const back = document.createElement("button");
    back.type = "button";
    back.className = "link";
    back.textContent = "← Automation settings";
    back.addEventListener("click", () => select(null));
    box.append(back);
    const idInput = document.createElement("input");
    idInput.id = newId();
    idInput.value = node.id;
    idInput.addEventListener("input", () => {
      const next = idInput.value.trim();
      if (!next || doc.nodes.some((n, j) => j !== index && n.id === next)) {
        idInput.setAttribute("aria-invalid", "true");
        return;
      }
      idInput.removeAttribute("aria-invalid");
      const old = node.id;
      renameRefs(old, next);
      node.id = next;
      pos[next] = pos[old];
      if (next !== old) delete pos[old];
      selected = next;
      $("inspector-title").textContent = `${t ? t.title : node.type}: ${next}`;
      commit(`nodes.${index}.id`);
      renderCanvas();
    });
    box.append(fieldBox(["nodes", index, "id"], "Id", idInput));
    if (t) {
      const keys = Object.keys(t.properties).filter((k) => !["id", "type", "name", "next"].includes(k));
      for (const key of [...keys, "name"]) {
        const s = t.properties[key];
        const field = render(s, ["nodes", index, key], key === "name" ? "Label" : human(key), t.required.includes(key));
        if (field) box.append(field);
      }
      if (follows(node)) box.append(render(t.properties.next, ["nodes", index, "next"], "Next", false));
    }
  }
  showProblems();
}

// --- selection, nodes -------------------------------------------------------------------------

function select(id, focus = false) {
  selected = id;
  renderCanvas();
  renderInspector();
  if (focus && id) focusNode(id);
}

function focusNode(id) {
  const button = $("nodes").querySelector(`button.node-main[data-node="${CSS.escape(id)}"]`);
  if (button) button.focus();
}

function addNode(type) {
  const id = uniqueId(type.replace(/_/g, "-"));
  const node = { id, type };
  placeNew(id);
  doc.nodes.push(node);
  selected = id;
  commit();
  renderCanvas();
  renderInspector();
  say(`Added ${typeOf(type).title} ${id}.`);
  focusNode(id);
}

function deleteNode(id = selected) {
  const index = doc.nodes.findIndex((n) => n.id === id);
  if (index < 0) return say("Select a node first.");
  doc.nodes.splice(index, 1);
  renameRefs(id, undefined);
  delete pos[id];
  selected = null;
  commit();
  renderAll();
  say(`Deleted ${id}.`);
  const first = doc.nodes[Math.min(index, doc.nodes.length - 1)];
  if (first) focusNode(first.id);
}

function copyNode() {
  const node = doc.nodes.find((n) => n.id === selected);
  if (!node) return say("Select a node to copy.");
  clipboard = JSON.parse(JSON.stringify(node));
  say(`Copied ${node.id}.`);
}

function pasteNode() {
  if (!clipboard) return say("Copy a node first.");
  const node = JSON.parse(JSON.stringify(clipboard));
  const from = node.id;
  node.id = uniqueId(from.replace(/-\d+$/, ""));
  delete node.next;
  doc.nodes.push(node);
  const p = pos[from] || { x: 24, y: 24 };
  pos[node.id] = { x: p.x + 30, y: p.y + 30 };
  selected = node.id;
  commit();
  renderAll();
  say(`Pasted ${node.id}.`);
  focusNode(node.id);
}

function connect(id, path, target) {
  setIn(["nodes", doc.nodes.findIndex((n) => n.id === id), ...path], target);
  connecting = null;
  commit();
  renderAll();
  say(`${path.join(" ")} of ${id} leads to ${target}.`);
}

// --- checks, YAML -----------------------------------------------------------------------------

let checkTimer = null;
let checking = null;

let wanted = 0; // changes made; a check that saw the last of them clears data-pending

function scheduleCheck() {
  wanted += 1;
  root.dataset.pending = "1";
  clearTimeout(checkTimer);
  checkTimer = setTimeout(runCheck, 350);
}

async function post(url, fields) {
  const body = new URLSearchParams({ csrf, ...fields });
  const response = await fetch(url, { method: "POST", body, headers: { Accept: "application/json" } });
  if (!response.ok) {
    let detail = `${response.status}`;
    try { detail = (await response.json()).detail || detail; } catch { /* not JSON */ }
    throw new Error(detail);
  }
  return response.json();
}

async function runCheck() {
  clearTimeout(checkTimer);
  const seen = wanted;
  const mine = (checking = post(root.dataset.check, { definition: JSON.stringify(exported()) }));
  let result;
  try {
    result = await mine;
  } catch (error) {
    say(`Could not check: ${error.message}`);
    return;
  }
  if (mine !== checking) return; // a newer check is under way
  problems = result.problems || [];
  const area = $("yaml-text");
  if (document.activeElement !== area && !yamlBroken) {
    area.value = result.yaml;
    gutter();
  }
  root.dataset.checked = String(Date.now());
  if (seen === wanted) delete root.dataset.pending;
  renderCanvas();
  showProblems();
}

function showProblems() {
  const list = $("problems");
  list.replaceChildren();
  for (const el of root.querySelectorAll(".field-error")) if (el.id !== "yaml-error") el.textContent = "";
  for (const el of root.querySelectorAll("[aria-invalid].checked")) el.removeAttribute("aria-invalid");
  if (!problems.length) {
    const li = document.createElement("li");
    li.className = "ok";
    li.textContent = doc.nodes.length ? "No problem found: ready to review and publish." : "Add a node from the palette to begin.";
    list.append(li);
    return;
  }
  const fields = [...$("inspector").querySelectorAll(".field[data-path]")];
  for (const p of problems) {
    const li = document.createElement("li");
    const m = /^nodes\.(\d+)/.exec(p.path);
    const node = m ? doc.nodes[Number(m[1])] : null;
    if (node) {
      const go = document.createElement("button");
      go.type = "button";
      go.className = "link";
      go.textContent = node.id;
      go.addEventListener("click", () => select(node.id, true));
      li.append(go, `: ${p.text}`);
    } else {
      li.textContent = p.text;
    }
    list.append(li);
    // inline on the deepest field the path falls under
    let best = null;
    for (const f of fields) {
      const fp = f.dataset.path;
      if ((p.path === fp || p.path.startsWith(`${fp}.`)) && (!best || fp.length > best.dataset.path.length)) best = f;
    }
    if (best) {
      best.querySelector(":scope > .field-error").textContent = p.text;
      const control = best.querySelector(":scope > input, :scope > select, :scope > textarea");
      if (control) {
        control.setAttribute("aria-invalid", "true");
        control.classList.add("checked");
      }
    }
  }
}

function gutter() {
  const area = $("yaml-text");
  const count = area.value.split("\n").length;
  const bad = Number(area.dataset.badLine || 0);
  const g = $("yaml-gutter");
  g.replaceChildren();
  for (let i = 1; i <= count; i++) {
    const span = document.createElement("span");
    span.textContent = String(i);
    if (i === bad) span.className = "bad";
    g.append(span);
  }
  g.scrollTop = area.scrollTop;
}

let yamlTimer = null;

async function yamlEdited() {
  const area = $("yaml-text");
  let result;
  try {
    result = await post(root.dataset.check, { yaml: area.value });
  } catch (error) {
    say(`Could not read the YAML: ${error.message}`);
    return;
  }
  const error = $("yaml-error");
  if (result.yaml_error) {
    yamlBroken = true;
    const e = result.yaml_error;
    area.dataset.badLine = String(e.line);
    area.setAttribute("aria-invalid", "true");
    error.textContent = `Line ${e.line}, column ${e.column}: ${e.message}`;
    gutter();
    return;
  }
  yamlBroken = false;
  delete area.dataset.badLine;
  area.removeAttribute("aria-invalid");
  const raw = result.definition;
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) {
    error.textContent = "Line 1, column 1: an automation is a mapping with key, triggers and nodes";
    gutter();
    return;
  }
  error.textContent = "";
  doc = raw;
  if (!Array.isArray(doc.nodes)) doc.nodes = [];
  const ids = new Set(doc.nodes.map((n) => n && n.id));
  for (const id of Object.keys(pos)) if (!ids.has(id)) delete pos[id];
  layout(new Set(doc.nodes.filter((n) => !pos[n.id]).map((n) => n.id)));
  problems = result.problems || [];
  lastKey = "yaml";
  const now = snap();
  if (now !== lastSnap) {
    undo.push(lastSnap);
    redo.length = 0;
    lastSnap = now;
  }
  if (selected && !ids.has(selected)) selected = null;
  gutter();
  renderAll();
  root.dataset.checked = String(Date.now());
}

// --- drafts, review ---------------------------------------------------------------------------

async function currentYaml() {
  if (yamlBroken) return $("yaml-text").value; // kept as written, mistakes and all
  await runCheck();
  return $("yaml-text").value;
}

async function saveDraft() {
  const yaml = await currentYaml();
  const saved = await post(root.dataset.drafts, { yaml, draft: draftId ?? "" });
  draftId = saved.id;
  const url = new URL(window.location.href);
  url.searchParams.set("draft", String(draftId));
  window.history.replaceState(null, "", url);
  say(`Draft saved: ${saved.name}.`);
  return saved;
}

// --- wiring -----------------------------------------------------------------------------------

function renderPalette() {
  const box = $("palette");
  const groups = { flow: "Flow", action: "Actions", send: "Messages" };
  for (const [cat, title] of Object.entries(groups)) {
    const types = nodeTypes.filter((t) => t["x-category"] === cat);
    if (!types.length) continue;
    const h = document.createElement("h3");
    h.textContent = title;
    const ul = document.createElement("ul");
    for (const t of types) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = t.title;
      b.dataset.add = t.properties.type.const;
      b.className = `cat-${cat}`;
      li.append(b);
      ul.append(li);
    }
    box.append(h, ul);
  }
}

function renderAll() {
  renderCanvas();
  renderInspector();
}

function onCanvasClick(event) {
  const port = event.target.closest("button.port");
  if (port) {
    const id = port.closest("li.node").dataset.id;
    const path = port.dataset.port.split(".").map((p) => (/^\d+$/.test(p) ? Number(p) : p));
    connecting = connecting && connecting.id === id && connecting.path.join(".") === path.join(".") ? null : { id, path };
    say(connecting ? `Now choose the node ${path.join(" ")} of ${id} leads to (Escape cancels).` : "Not connecting.");
    renderCanvas();
    const again = $("nodes").querySelector(`li[data-id="${CSS.escape(id)}"] button.port[data-port="${CSS.escape(port.dataset.port)}"]`);
    if (again) again.focus();
    return;
  }
  const main = event.target.closest("button.node-main");
  if (!main) return;
  if (moved) return;
  if (connecting) {
    if (main.dataset.node !== connecting.id) connect(connecting.id, connecting.path, main.dataset.node);
    return;
  }
  select(main.dataset.node, true);
}

let drag = null;
let moved = false;

function onPointerDown(event) {
  const main = event.target.closest("button.node-main");
  if (!main || event.button !== 0) return;
  const id = main.dataset.node;
  drag = { id, x: event.clientX, y: event.clientY, from: { ...pos[id] } };
  moved = false;
}

function onPointerMove(event) {
  if (!drag) return;
  const dx = event.clientX - drag.x;
  const dy = event.clientY - drag.y;
  if (!moved && Math.abs(dx) + Math.abs(dy) < 4) return;
  moved = true;
  pos[drag.id] = { x: Math.max(0, drag.from.x + dx), y: Math.max(0, drag.from.y + dy) };
  const li = $("nodes").querySelector(`li[data-id="${CSS.escape(drag.id)}"]`);
  li.style.left = `${pos[drag.id].x}px`;
  li.style.top = `${pos[drag.id].y}px`;
  drawEdges();
}

function onPointerUp() {
  if (drag && moved) {
    commit();
    setTimeout(() => { moved = false; }, 0);
  }
  drag = null;
}

function onNodeKey(event) {
  const main = event.target.closest("button.node-main");
  if (!main) return;
  const id = main.dataset.node;
  const step = event.shiftKey ? 50 : 10;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  if (moves[event.key]) {
    event.preventDefault();
    if (selected !== id) select(id);
    const [dx, dy] = moves[event.key];
    pos[id] = { x: Math.max(0, pos[id].x + dx), y: Math.max(0, pos[id].y + dy) };
    commit(`move-${id}`);
    renderCanvas();
    focusNode(id);
    say(`${id} at ${pos[id].x}, ${pos[id].y}.`);
  } else if (event.key === "Delete" || event.key === "Backspace") {
    event.preventDefault();
    deleteNode(id);
  }
}

function onKey(event) {
  const typing = event.target.closest("input, textarea, select");
  const mod = event.ctrlKey || event.metaKey;
  if (event.key === "Escape" && connecting) {
    connecting = null;
    renderCanvas();
    say("Not connecting.");
    return;
  }
  if (typing || !mod) return;
  const k = event.key.toLowerCase();
  const actions = { z: event.shiftKey ? redoOnce : undoOnce, y: redoOnce, c: copyNode, v: pasteNode };
  if (actions[k]) {
    event.preventDefault();
    actions[k]();
  }
}

function showTab(which) {
  const yaml = which === "yaml";
  $("view-canvas").hidden = yaml;
  $("view-yaml").hidden = !yaml;
  $("tab-canvas").setAttribute("aria-selected", String(!yaml));
  $("tab-yaml").setAttribute("aria-selected", String(yaml));
  $("tab-canvas").tabIndex = yaml ? -1 : 0;
  $("tab-yaml").tabIndex = yaml ? 0 : -1;
  if (!yaml) renderAll();
  else gutter();
}

function init() {
  if (start.definition) layout();
  renderPalette();
  $("palette").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-add]");
    if (b) addNode(b.dataset.add);
  });
  const canvas = $("canvas");
  canvas.addEventListener("click", onCanvasClick);
  canvas.addEventListener("pointerdown", onPointerDown);
  window.addEventListener("pointermove", onPointerMove);
  window.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("keydown", onNodeKey);
  document.addEventListener("keydown", onKey);
  const actions = {
    undo: undoOnce,
    redo: redoOnce,
    copy: copyNode,
    paste: pasteNode,
    delete: () => deleteNode(),
    tidy: () => {
      layout();
      commit();
      renderCanvas();
      say("Nodes arranged top to bottom from the first.");
    },
    save: () => saveDraft().catch((e) => say(`Not saved: ${e.message}`)),
    review: async () => {
      try {
        const saved = await saveDraft();
        window.location.assign(`${root.dataset.review}?draft=${saved.id}`);
      } catch (e) {
        say(`Not saved: ${e.message}`);
      }
    },
  };
  root.querySelector(".toolbar").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-do]");
    if (b) actions[b.dataset.do]();
  });
  for (const tab of root.querySelectorAll('[role="tab"]')) {
    tab.addEventListener("click", () => showTab(tab.id === "tab-yaml" ? "yaml" : "canvas"));
    tab.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        const other = tab.id === "tab-yaml" ? "tab-canvas" : "tab-yaml";
        showTab(other === "tab-yaml" ? "yaml" : "canvas");
        $(other).focus();
      }
    });
  }
  const area = $("yaml-text");
  area.value = start.yaml || "";
  area.addEventListener("input", () => {
    gutter();
    clearTimeout(yamlTimer);
    yamlTimer = setTimeout(yamlEdited, 400);
  });
  area.addEventListener("scroll", () => { $("yaml-gutter").scrollTop = area.scrollTop; });
  if (!start.definition && start.yaml) {
    yamlBroken = true; // a draft saved with a YAML mistake opens in the YAML view
    showTab("yaml");
    yamlEdited();
  }
  lastSnap = snap();
  renderAll();
  gutter();
  scheduleCheck();
}

init();
