// Gatehouse's own few lines of script, loaded on every page (no build step, no inline code).
// A button with data-copy puts that text on the clipboard and says so; where the clipboard
// cannot be written, the text it names (data-copy-target) is selected for Ctrl+C instead.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const said = button.textContent;
  const done = (text) => {
    button.textContent = text;
    setTimeout(() => { button.textContent = said; }, 4000);
  };
  const selectInstead = () => {
    const target = document.querySelector(button.dataset.copyTarget || "");
    if (target) window.getSelection().selectAllChildren(target);
    done("Selected: press Ctrl+C");
  };
  if (!navigator.clipboard) return selectInstead();
  navigator.clipboard.writeText(button.dataset.copy).then(() => done("Copied"), selectInstead);
});
