// The review page's keys, as in `z2v review`: Enter or space reveals, 1-4 rate. Plain clicks on
// the page's own buttons, so htmx and the CSRF token work exactly as with the mouse.
document.addEventListener("keydown", function (e) {
  if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest("input, textarea, select")) return;
  var button = null;
  if (e.key === "Enter" || e.key === " ") button = document.querySelector("#review .reveal-btn");
  else if ("1234".indexOf(e.key) >= 0 && e.key.length === 1)
    button = document.querySelector('#review .ratings button[value="' + e.key + '"]');
  if (button) { e.preventDefault(); button.click(); }
});
