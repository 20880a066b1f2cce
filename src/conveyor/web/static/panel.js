// The panel's script: progressive enhancement only (every page works without it).
// - the automation graph: counts refresh every 2 s from live.json (patched into the SVG), and a
//   node (click, or Enter on it) opens its recent steps beside the graph instead of a new page;
// - buttons with data-confirm ask first.

const POLL_MS = 2000;

function confirmations() {
  document.addEventListener("submit", (event) => {
    const button = event.submitter;
    const question = button && button.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });
}

function format(n) {
  return Number(n || 0).toLocaleString("en-US");
}

function patch(root, live) {
  for (const [node, counts] of Object.entries(live.nodes)) {
    const group = root.querySelector(`g.node[data-node="${CSS.escape(node)}"]`);
    if (!group) continue;
    for (const [name, value] of Object.entries(counts)) {
      const span = group.querySelector(`tspan[data-count="${name}"]`);
      if (span && span.textContent !== format(value)) {
        span.textContent = format(value);
        span.classList.add("changed");
        setTimeout(() => span.classList.remove("changed"), 1200);
      }
    }
  }
  // nodes no run has reached any more (none left) read 0
  for (const span of root.querySelectorAll("g.node tspan[data-count='waiting']")) {
    const node = span.closest("g.node").dataset.node;
    if (!(node in live.nodes)) span.textContent = "0";
  }
  for (const dd of document.querySelectorAll("[data-run]")) {
    dd.textContent = format(live.runs[dd.dataset.run]);
  }
}

function liveGraph() {
  // The graph page names its counts' URL in data-live-url (`data-live` marks the template
  // editor's live-preview inputs: a page holding those is not polled).
  const page = document.querySelector("[data-live-url]");
  if (!page) return;
  const status = page.querySelector("[data-live-status]");
  const badge = page.querySelector(".live");
  let failures = 0;
  async function tick() {
    try {
      const response = await fetch(page.dataset.liveUrl, { headers: { Accept: "application/json" } });
      if (response.status === 401) {
        status.textContent = "Signed out: reload to sign in again.";
        badge.classList.remove("on");
        return;
      }
      if (!response.ok) throw new Error(String(response.status));
      patch(page, await response.json());
      failures = 0;
      badge.classList.add("on");
      status.textContent = "Live: counts update every 2 seconds.";
    } catch (error) {
      failures += 1;
      badge.classList.remove("on");
      status.textContent = "Cannot reach Conveyor; retrying.";
    }
    setTimeout(tick, Math.min(POLL_MS * 2 ** failures, 30000));
  }
  tick();

  const drawer = document.getElementById("drawer");
  page.addEventListener("click", async (event) => {
    const link = event.target.closest("a.node-link");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    for (const other of page.querySelectorAll("a.node-link.selected")) other.classList.remove("selected");
    link.classList.add("selected");
    const href = link.getAttribute("href");
    const response = await fetch(`${href}?fragment=1`);
    if (response.redirected || !response.ok) {
      window.location.assign(response.redirected ? response.url : href); // signed out, or gone
      return;
    }
    drawer.innerHTML = await response.text();
    const heading = drawer.querySelector("h2");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  });
}

confirmations();
liveGraph();
