/* Conveyor's website snippet: tracking calls, and the visitor's site messages.
 *
 *   <script src="https://HOST/sdk/conveyor.js" data-key="WRITE_KEY" async></script>
 *
 * then conveyor.identify(userId, traits, {userHash}), conveyor.track(event, properties),
 * conveyor.page(name, properties) (sent on load; data-page="false" turns that off) and
 * conveyor.reset() on sign-out. Before the script has loaded, queue calls in an array:
 * window.conveyor = window.conveyor || []; conveyor.push(["identify", "u-1", {plan: "pro"}]);
 * No dependencies, no cookies: the anonymous id lives in localStorage.
 */
(function (window, document) {
  "use strict";

  var VERSION = "1.0.0";
  var PREFIX = "conveyor_";
  var script =
    document.currentScript ||
    document.querySelector("script[data-key][src*='/sdk/conveyor.js']");
  if (!script || (window.conveyor && window.conveyor.version)) return;
  var writeKey = script.getAttribute("data-key") || "";
  var host = (script.getAttribute("data-host") || new URL(script.src, location.href).origin)
    .replace(/\/+$/, "");
  var memory = {};

  // --- visitor identity ----------------------------------------------------------------------

  function load(name) {
    try {
      var value = window.localStorage.getItem(PREFIX + name);
      if (value !== null) return value;
    } catch (e) { /* storage blocked: keep it for this page only */ }
    return memory.hasOwnProperty(name) ? memory[name] : null;
  }

  function save(name, value) {
    if (value === null || value === undefined) delete memory[name];
    else memory[name] = String(value);
    try {
      if (value === null || value === undefined) window.localStorage.removeItem(PREFIX + name);
      else window.localStorage.setItem(PREFIX + name, String(value));
    } catch (e) { /* memory holds it */ }
  }

  function uuid() {
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = [];
    for (var i = 0; i < 16; i++) h.push((b[i] + 0x100).toString(16).slice(1));
    return h.slice(0, 4).join("") + "-" + h.slice(4, 6).join("") + "-" +
      h.slice(6, 8).join("") + "-" + h.slice(8, 10).join("") + "-" + h.slice(10).join("");
  }

  function anonymousId() {
    var id = load("anonymous_id");
    if (!id) {
      id = uuid();
      save("anonymous_id", id);
    }
    return id;
  }

  // Who asks for site messages: the signed-in user (with its hash, for identity verification)
  // or else the anonymous visitor.
  function visitor() {
    var userId = load("user_id");
    if (!userId) return { anonymousId: anonymousId() };
    var who = { userId: userId };
    var hash = load("user_hash");
    if (hash) who.userHash = hash;
    return who;
  }

  // --- calls ---------------------------------------------------------------------------------

  function warn(what, error) {
    if (window.console && console.warn) console.warn("conveyor: " + what, error || "");
  }

  // text/plain with the key in the body: a "simple" request, so no CORS preflight, and it may
  // outlive the page (keepalive) when a click navigates away.
  function post(path, body) {
    body.writeKey = writeKey;
    // The device's clock at sending: the server corrects the call's timestamp by it (the
    // Segment rule), so a visitor whose clock is off still lands at the right moment.
    body.sentAt = new Date().toISOString();
    return window.fetch(host + path, {
      method: "POST",
      headers: { "Content-Type": "text/plain" },
      body: JSON.stringify(body),
      credentials: "omit",
      keepalive: true
    }).then(function (response) {
      if (!response.ok) warn(path + " answered " + response.status);
      return response;
    });
  }

  function pageProperties() {
    return {
      url: location.href,
      path: location.pathname,
      search: location.search,
      title: document.title,
      referrer: document.referrer
    };
  }

  function call(type, fields) {
    var now = new Date().toISOString();
    var body = {
      type: type,
      messageId: uuid(),
      anonymousId: anonymousId(),
      timestamp: now,
      context: {
        library: { name: "conveyor.js", version: VERSION },
        page: pageProperties(),
        userAgent: navigator.userAgent,
        locale: navigator.language
      }
    };
    var userId = load("user_id");
    if (userId) body.userId = userId;
    for (var k in fields) if (fields.hasOwnProperty(k)) body[k] = fields[k];
    return post("/v1/" + type, body).catch(function (e) { warn(type + " failed", e); });
  }

  // --- site messages -------------------------------------------------------------------------

  var waiting = [];
  var offered = {};
  var current = null;

  function refresh() {
    var who = visitor();
    var query = [];
    for (var k in who) query.push(encodeURIComponent(k) + "=" + encodeURIComponent(who[k]));
    return window.fetch(host + "/v1/site-messages?" + query.join("&"), {
      headers: { Authorization: "Basic " + window.btoa(writeKey + ":") },
      credentials: "omit"
    }).then(function (response) {
      if (!response.ok) {
        warn("site messages answered " + response.status);
        return { items: [] };
      }
      return response.json();
    }).then(function (data) {
      (data.items || []).forEach(function (message) {
        if (!offered[message.id]) {
          offered[message.id] = true;
          waiting.push(message);
        }
      });
      showNext();
    }).catch(function (e) { warn("site messages failed", e); });
  }

  // A message an automation shows because of what the visitor just did is ready a moment
  // after the call (the engine's trigger latency): look again shortly after each call, then
  // stop. Short polls rather than a held connection: nothing stays open per visitor, and it
  // passes every proxy and CDN in front of the server.
  var FOLLOW_MS = [500, 1500, 3500, 7500];
  var following = [];

  function follow() {
    following.forEach(function (timer) { window.clearTimeout(timer); });
    following = FOLLOW_MS.map(function (ms) {
      return window.setTimeout(function () {
        if (document.visibilityState !== "hidden") refresh();
      }, ms);
    });
  }

  function report(message, what) {
    return post("/v1/site-messages/" + message.id + "/" + what, visitor())
      .catch(function (e) { warn(what + " not reported", e); });
  }

  function safeUrl(url) {
    if (!url) return null;
    try {
      var parsed = new URL(url, location.href);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  var CSS =
    ":host{all:initial}" +
    ".box{position:fixed;z-index:2147483000;right:1rem;bottom:1rem;max-width:22rem;" +
    "box-sizing:border-box;padding:1rem 2.75rem 1rem 1.25rem;border-radius:.5rem;" +
    "background:#fff;color:#1a1a1a;font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;" +
    "box-shadow:0 .5rem 2rem rgba(0,0,0,.25);border:1px solid #d0d0d0}" +
    ".title{margin:0 0 .35rem;font-size:1.05rem;font-weight:600}" +
    ".body{margin:0 0 .85rem;white-space:pre-line;overflow-wrap:anywhere}" +
    ".action{display:inline-block;padding:.45rem .95rem;border-radius:.35rem;border:0;" +
    "background:#1f4fd1;color:#fff;font:inherit;font-weight:600;text-decoration:none;cursor:pointer}" +
    ".close{position:absolute;top:.4rem;right:.4rem;width:2rem;height:2rem;border:0;" +
    "border-radius:.35rem;background:transparent;color:#444;font:1.35rem/1 sans-serif;cursor:pointer}" +
    ".action:focus-visible,.close:focus-visible{outline:3px solid #f5a623;outline-offset:2px}" +
    "@media (max-width:30rem){.box{left:.5rem;right:.5rem;bottom:.5rem;max-width:none}}";

  function element(root, tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text; // text, never HTML: messages carry contact data
    root.appendChild(node);
    return node;
  }

  function showNext() {
    if (current || !waiting.length) return;
    if (!document.body) {
      document.addEventListener("DOMContentLoaded", showNext);
      return;
    }
    var message = waiting.shift();
    var holder = document.createElement("div");
    holder.setAttribute("data-conveyor-message", String(message.id));
    var root = holder.attachShadow ? holder.attachShadow({ mode: "open" }) : holder;
    element(root, "style", null, CSS);
    var box = element(root, "div", "box");
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-modal", "false");
    box.setAttribute("aria-live", "polite");
    var prefix = "conveyor-message-" + message.id;
    if (message.title) {
      element(box, "h2", "title", message.title).id = prefix + "-title";
      box.setAttribute("aria-labelledby", prefix + "-title");
    } else {
      box.setAttribute("aria-label", "Message");
    }
    if (message.body) {
      element(box, "p", "body", message.body).id = prefix + "-body";
      box.setAttribute("aria-describedby", prefix + "-body");
    }
    current = { message: message, holder: holder };

    var url = safeUrl(message.url);
    if (url || message.button) {
      var action = element(box, url ? "a" : "button", "action", message.button || "Open");
      if (url) action.href = url;
      else action.type = "button";
      action.addEventListener("click", function () {
        report(message, "clicked");
        close();
      });
    }
    var dismiss = element(box, "button", "close", "\u00d7");
    dismiss.type = "button";
    dismiss.setAttribute("aria-label", "Close");
    dismiss.addEventListener("click", function () {
      report(message, "dismissed");
      close();
    });
    box.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        report(message, "dismissed");
        close();
      }
    });
    document.body.appendChild(holder);
    report(message, "shown");
  }

  function close() {
    if (!current) return;
    var holder = current.holder;
    current = null;
    // After the click has been handled, so a link still navigates.
    window.setTimeout(function () {
      if (holder.parentNode) holder.parentNode.removeChild(holder);
      showNext();
    }, 0);
  }

  // --- the public API ------------------------------------------------------------------------

  var api = {
    version: VERSION,
    identify: function (userId, traits, options) {
      if (userId !== undefined && userId !== null && userId !== "") {
        save("user_id", userId);
        save("user_hash", options && options.userHash ? options.userHash : null);
      }
      return call("identify", { traits: traits || {} }).then(refresh).then(follow);
    },
    track: function (event, properties) {
      return call("track", { event: String(event), properties: properties || {} }).then(follow);
    },
    page: function (name, properties) {
      var fields = { properties: pageProperties() };
      if (typeof name === "string") fields.name = name;
      else if (name && typeof name === "object") properties = name;
      for (var k in properties || {}) {
        if (properties.hasOwnProperty(k)) fields.properties[k] = properties[k];
      }
      return call("page", fields).then(refresh).then(follow);
    },
    reset: function () {
      save("user_id", null);
      save("user_hash", null);
      save("anonymous_id", null);
      waiting = [];
      offered = {};
      following.forEach(function (timer) { window.clearTimeout(timer); });
      following = [];
    },
    anonymousId: anonymousId,
    showMessages: refresh
  };

  var queued = window.conveyor;
  window.conveyor = api;
  var pageQueued = false;
  if (queued && queued.length) {
    for (var i = 0; i < queued.length; i++) {
      var entry = queued[i];
      if (entry && typeof api[entry[0]] === "function") {
        if (entry[0] === "page") pageQueued = true;
        api[entry[0]].apply(api, Array.prototype.slice.call(entry, 1));
      }
    }
  }
  if (!pageQueued && script.getAttribute("data-page") !== "false") api.page();
})(window, document);
