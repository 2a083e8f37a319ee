/* The import preview: "All" ticks or unticks every function that can be imported, and the import button is
   disabled while nothing is ticked (the server refuses an empty choice too, so the page works without this). */
(function () {
  "use strict";

  var form = document.querySelector("form[data-import-form]");
  if (!form) return;
  var choices = Array.prototype.slice.call(form.querySelectorAll("input[data-import-choice]"));
  var all = form.querySelector("input[data-select-all]");
  var button = form.querySelector('[data-testid="import-apply"]');
  var count = form.querySelector("[data-chosen-count]");

  function update() {
    var ticked = choices.filter(function (box) { return box.checked; }).length;
    if (button) button.disabled = ticked === 0;
    if (count) count.textContent = ticked ? ticked + " of " + choices.length + " ticked" : "Tick at least one function to import.";
    if (all) {
      all.checked = ticked > 0 && ticked === choices.length;
      all.indeterminate = ticked > 0 && ticked < choices.length;
    }
  }

  if (all && choices.length) {
    form.querySelector("[data-select-all-label]").hidden = false;
    all.addEventListener("change", function () {
      choices.forEach(function (box) { box.checked = all.checked; });
      update();
    });
  }
  choices.forEach(function (box) { box.addEventListener("change", update); });
  update();
})();
