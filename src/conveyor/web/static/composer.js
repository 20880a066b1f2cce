// The campaign composer's live audience count: every change to the audience (or the channel)
// is counted by the server (debounced; a stale request is aborted). The form itself is a plain
// POST that works without this script.

const DEBOUNCE_MS = 300;
const form = document.getElementById("composer");

function names(data, name) {
  return data.getAll(name).flatMap((v) => String(v).split(",")).map((v) => v.trim()).filter(Boolean);
}

function audienceOf(data) {
  const audience = {};
  const exclude = {};
  for (const kind of ["lists", "segments", "tags"]) {
    const given = names(data, kind);
    if (given.length) audience[kind] = given;
    const except = names(data, `exclude_${kind}`);
    if (except.length) exclude[kind] = except;
  }
  if (Object.keys(exclude).length) audience.exclude = exclude;
  return audience;
}

if (form) {
  const out = form.querySelector("[data-count]");
  const status = form.querySelector("#count-status");
  let timer = null;
  let inflight = null;

  async function count() {
    const data = new FormData(form);
    const audience = audienceOf(data);
    if (inflight) inflight.abort();
    if (!audience.lists && !audience.segments && !audience.tags) {
      out.textContent = "—";
      status.textContent = "Choose lists, segments or tags to count who would get it.";
      form.removeAttribute("aria-busy");
      return;
    }
    const controller = new AbortController();
    inflight = controller;
    try {
      const response = await fetch(form.dataset.count, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": form.dataset.csrf },
        body: JSON.stringify({ audience, channel: data.get("channel") }),
        signal: controller.signal,
      });
      const body = await response.json();
      if (response.ok) {
        out.textContent = Number(body.count).toLocaleString("en-US");
        status.textContent = `Contacts with an address for ${data.get("channel") === "sms" ? "SMS" : "email"}, counted now.`;
      } else {
        out.textContent = "—";
        status.textContent = body.detail || "Not counted.";
      }
    } catch (error) {
      if (error.name !== "AbortError") status.textContent = "Cannot reach Conveyor; change something to retry.";
    } finally {
      if (inflight === controller) {
        inflight = null;
        form.removeAttribute("aria-busy");
      }
    }
  }

  const changed = (event) => {
    const name = event.target.name || "";
    if (!/^(exclude_)?(lists|segments|tags)$|^channel$/.test(name)) return;
    clearTimeout(timer);
    form.setAttribute("aria-busy", "true");
    status.textContent = "Counting…";
    timer = setTimeout(count, DEBOUNCE_MS);
  };
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  count();
}
