// The CRM board's enhancement: drag a deal onto another stage's column. The drop only sets the
// deal's own "Move" form (the way without JavaScript or a mouse) and submits it, so both ways
// are one server action.

for (const card of document.querySelectorAll(".board .deal[draggable]")) {
  card.addEventListener("dragstart", (event) => {
    event.dataTransfer.setData("text/plain", card.dataset.deal);
    event.dataTransfer.effectAllowed = "move";
    card.classList.add("dragging");
  });
  card.addEventListener("dragend", () => card.classList.remove("dragging"));
}

for (const column of document.querySelectorAll(".board .column")) {
  column.addEventListener("dragover", (event) => {
    event.preventDefault();
    column.classList.add("drop");
  });
  column.addEventListener("dragleave", () => column.classList.remove("drop"));
  column.addEventListener("drop", (event) => {
    event.preventDefault();
    column.classList.remove("drop");
    const id = event.dataTransfer.getData("text/plain");
    const card = document.querySelector(`.board .deal[data-deal="${CSS.escape(id)}"]`);
    const form = card && card.querySelector("form.move");
    if (!form || card.closest(".column") === column) return;
    form.elements.stage.value = column.dataset.stage;
    form.requestSubmit();
  });
}
