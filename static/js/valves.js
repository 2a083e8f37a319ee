/* Niceties for the valves forms and the API keys page. Every page works without this file. */
(function () {
  "use strict";

  // Show/hide what is being typed into a secret field. A stored secret is never in the page, so there is
  // nothing else to reveal.
  document.querySelectorAll('input[data-secret="true"]').forEach(function (input) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "button small valve-reveal";
    button.textContent = "Show";
    button.setAttribute("aria-controls", input.id);
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", function () {
      var showing = input.type === "text";
      input.type = showing ? "password" : "text";
      button.textContent = showing ? "Show" : "Hide";
      button.setAttribute("aria-pressed", showing ? "false" : "true");
    });
    input.insertAdjacentElement("afterend", button);
  });

  // Check JSON as it is typed; the server checks again on save.
  document.querySelectorAll('textarea[data-json="true"]').forEach(function (area) {
    var note = document.createElement("p");
    note.className = "field-error valve-json-note";
    note.id = area.id + "-json";
    note.setAttribute("aria-live", "polite");
    area.insertAdjacentElement("afterend", note);
    function check() {
      var text = area.value.trim();
      var message = "";
      if (text) {
        try { JSON.parse(text); } catch (error) { message = "Not valid JSON yet: " + error.message; }
      }
      note.textContent = message;
      area.setAttribute("aria-invalid", message ? "true" : "false");
    }
    area.addEventListener("input", check);
  });

  // A ticked "reset" box makes the field's own input moot: show it as such.
  document.querySelectorAll('.valve-reset input[type="checkbox"]').forEach(function (box) {
    var field = box.closest(".valve-field");
    function sync() { field.classList.toggle("is-resetting", box.checked); }
    box.addEventListener("change", sync);
    sync();
  });

  // Copy the new API key.
  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      function done() {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(target.value).then(done, function () { target.select(); });
      } else {
        target.select();
        try { if (document.execCommand("copy")) done(); } catch (error) { /* the key stays selected */ }
      }
    });
  });
  var newKey = document.getElementById("new-key-value");
  if (newKey) { newKey.addEventListener("focus", function () { newKey.select(); }); }

  // Escape closes an open confirmation.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.confirm[open]").forEach(function (details) {
      details.open = false;
      var summary = details.querySelector("summary");
      if (summary) summary.focus();
    });
  });
})();
