// The template editor: a live preview while typing (debounced), errors at their line and column
// (a button selects the place in the editor; the line number is marked), line numbers beside
// the code. Without this script the editor still works: Preview posts the draft into the frame,
// Save shows the errors under their field.

const DELAY_MS = 400;

function lineNumbers(textarea) {
  const gutter = textarea.parentElement.querySelector(".gutter");
  if (!gutter) return () => {};
  gutter.hidden = false;
  textarea.parentElement.classList.add("numbered");
  let marked = new Set();
  function draw() {
    const count = textarea.value.split("\n").length;
    if (gutter.childElementCount !== count) {
      const lines = [];
      for (let i = 1; i <= count; i += 1) lines.push(`<span data-line="${i}">${i}</span>`);
      gutter.innerHTML = lines.join("");
    }
    for (const span of gutter.querySelectorAll(".bad")) span.classList.remove("bad");
    for (const line of marked) gutter.querySelector(`[data-line="${line}"]`)?.classList.add("bad");
    gutter.scrollTop = textarea.scrollTop;
  }
  textarea.addEventListener("input", draw);
  textarea.addEventListener("scroll", () => { gutter.scrollTop = textarea.scrollTop; });
  draw();
  return (lines) => { marked = new Set(lines); draw(); };
}

function goTo(field, line, column) {
  const input = document.getElementById(`f-${field}`);
  if (!input) return;
  const lines = input.value.split("\n");
  const row = Math.min(Math.max(line, 1), lines.length);
  let start = 0;
  for (let i = 0; i < row - 1; i += 1) start += lines[i].length + 1;
  const end = start + lines[row - 1].length;
  const at = Math.min(start + Math.max(column - 1, 0), end);
  input.focus();
  input.setSelectionRange(at, end > at ? end : at);
  if (input.tagName === "TEXTAREA") {
    const height = parseFloat(getComputedStyle(input).lineHeight) || 18;
    input.scrollTop = Math.max(0, (row - 3) * height);
  }
}

function showProblems(form, problems, marks) {
  const byInput = {};
  for (const p of problems) if (!(p.input in byInput)) byInput[p.input] = p;
  for (const box of form.querySelectorAll("[data-error-for]")) {
    const field = box.dataset.errorFor;
    const input = document.getElementById(`f-${field}`);
    const problem = byInput[field];
    if (field === "contact" || field === "to" || field === "event") continue; // their own answers
    box.textContent = "";
    box.hidden = !problem;
    if (input && problem) input.setAttribute("aria-invalid", "true");
    else if (input) input.removeAttribute("aria-invalid");
    if (!problem) continue;
    if (problem.line) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link goto";
      button.dataset.goto = field;
      button.dataset.line = problem.line;
      button.dataset.column = problem.column;
      button.textContent = `line ${problem.line}, column ${problem.column}`;
      box.append(button, `: ${problem.message}`);
    } else {
      box.textContent = problem.message;
    }
  }
  for (const [field, mark] of Object.entries(marks)) {
    const p = byInput[field];
    mark(p && p.line ? [p.line] : []);
  }
  const status = document.getElementById("problems-status");
  if (status) {
    status.textContent = problems.length
      ? `${problems.length} error${problems.length === 1 ? "" : "s"}: ${problems.map((p) => `${p.part} ${p.text}`).join("; ")}`
      : "No errors.";
  }
}

function editor() {
  const form = document.getElementById("editor");
  if (!form) return;
  const marks = {};
  for (const field of ["body", "text"]) {
    const area = document.getElementById(`f-${field}`);
    if (area) marks[field] = lineNumbers(area);
  }
  const previewButton = document.getElementById("preview-button");
  const subject = document.getElementById("pv-subject");
  const text = document.getElementById("pv-text");
  const contactStatus = document.getElementById("contact-status");
  const contactError = document.getElementById("err-contact");
  let timer = null;
  let asked = 0;

  async function refresh() {
    const mine = (asked += 1);
    let answer;
    try {
      const response = await fetch(form.dataset.render, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
      });
      if (response.status === 401) {
        contactStatus.textContent = "Signed out: reload to sign in again.";
        return;
      }
      answer = await response.json();
    } catch (error) {
      contactStatus.textContent = "Cannot reach Conveyor; the preview will update when it can.";
      return;
    }
    if (mine !== asked) return; // a newer answer is on its way
    form.dataset.state = answer.ok ? "ok" : "invalid";
    document.getElementById("stale-note").hidden = answer.ok;
    showProblems(form, answer.problems || [], marks);
    if (contactError) {
      contactError.hidden = !answer.contact_problem;
      contactError.textContent = answer.contact_problem || "";
    }
    const eventError = document.getElementById("err-event");
    if (eventError) {
      eventError.hidden = !answer.event_problem;
      eventError.textContent = answer.event_problem || "";
      const input = document.getElementById("f-event");
      if (answer.event_problem) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    if (answer.render_problem) contactStatus.textContent = answer.render_problem;
    if (!answer.ok) return;
    subject.textContent = answer.subject || "";
    text.textContent = answer.text || "";
    contactStatus.textContent = answer.contact
      ? `Shown as ${answer.contact.email || `contact ${answer.contact.id}`} would get it.`
      : answer.contact_problem ? "" : "Shown with no contact: their values are empty.";
    form.requestSubmit(previewButton);
  }

  form.addEventListener("input", (event) => {
    if (!event.target.matches("[data-live]")) return;
    clearTimeout(timer);
    timer = setTimeout(refresh, DELAY_MS);
  });
  form.addEventListener("click", (event) => {
    const button = event.target.closest("button.goto");
    if (!button) return;
    goTo(button.dataset.goto, Number(button.dataset.line), Number(button.dataset.column));
  });
  // Marks for the errors the server drew (after a refused save).
  for (const [field, mark] of Object.entries(marks)) {
    const button = form.querySelector(`button.goto[data-goto="${field}"]`);
    if (button) mark([Number(button.dataset.line)]);
  }
  if (form.querySelector("[aria-invalid='true']") === null) refresh();
}

editor();
