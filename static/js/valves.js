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

  // A ticked "reset" box makes the field's own input moot: show it as such, and leave a number out of the
  // browser's range check (the value is not sent to be kept anyway).
  document.querySelectorAll('.valve-reset input[type="checkbox"]').forEach(function (box) {
    var field = box.closest(".valve-field");
    function sync() {
      field.classList.toggle("is-resetting", box.checked);
      field.querySelectorAll('input[type="number"]').forEach(function (input) { input.disabled = box.checked; });
    }
    box.addEventListener("change", sync);
    sync();
  });

  var valvesForm = document.querySelector('form[data-testid="valves-form"]');

  // The browser checks number fields (min, max, step, and text that is no number) before sending; its message
  // is shown beside the field in the same words and style as the server's, instead of a passing bubble.
  function errorSlot(input) {
    var field = input.closest(".valve-field");
    var slot = document.getElementById(input.id + "-error");
    if (!slot) {
      slot = document.createElement("p");
      slot.className = "field-error";
      slot.id = input.id + "-error";
      slot.setAttribute("role", "alert");
      input.insertAdjacentElement("afterend", slot);
    }
    return { field: field, slot: slot };
  }
  function browserMessage(input) {
    var validity = input.validity;
    if (validity.badInput) return input.dataset.badError || "Enter a number.";
    if (validity.rangeUnderflow || validity.rangeOverflow || validity.stepMismatch) {
      return input.dataset.rangeError || input.validationMessage;
    }
    return input.validationMessage;
  }
  function showBrowserError(input) {
    var place = errorSlot(input);
    place.slot.textContent = browserMessage(input);
    place.slot.dataset.fromBrowser = "1";
    place.field.classList.add("has-error");
    input.setAttribute("aria-invalid", "true");
    var described = (input.getAttribute("aria-describedby") || "").split(" ");
    if (described.indexOf(place.slot.id) === -1) {
      input.setAttribute("aria-describedby", described.concat(place.slot.id).join(" ").trim());
    }
  }
  function clearBrowserError(input) {
    var slot = document.getElementById(input.id + "-error");
    if (!slot || slot.dataset.fromBrowser !== "1" || !input.validity.valid) return;
    slot.remove();
    input.closest(".valve-field").classList.remove("has-error");
    input.removeAttribute("aria-invalid");
    input.setAttribute("aria-describedby", (input.getAttribute("aria-describedby") || "")
      .split(" ").filter(function (id) { return id && id !== slot.id; }).join(" "));
  }
  if (valvesForm) {
    var firstInvalid = null;
    valvesForm.addEventListener("invalid", function (event) {
      var input = event.target;
      if (!input.matches('input[type="number"]')) return;
      event.preventDefault();
      showBrowserError(input);
      if (!firstInvalid) {
        firstInvalid = input;
        input.focus();
        window.setTimeout(function () { firstInvalid = null; }, 0);
      }
    }, true);
    valvesForm.querySelectorAll('input[type="number"]').forEach(function (input) {
      input.addEventListener("input", function () { clearBrowserError(input); });
      // Leaving the field only marks it (:user-invalid); its message comes with the save. Shown on leaving, it
      // pushed the Save button down between the press and the release of a click, which then did nothing.
      input.addEventListener("change", function () { clearBrowserError(input); });
    });
  }

  // Leaving a form with changes that are not saved asks first; a page that shows a refused save holds what was
  // typed, not what is stored, so it counts as changed from the start.
  if (valvesForm) {
    var dirty = valvesForm.dataset.unsaved === "1";
    valvesForm.addEventListener("input", function () { dirty = true; });
    valvesForm.addEventListener("change", function () { dirty = true; });
    valvesForm.addEventListener("submit", function () { dirty = false; });
    window.addEventListener("beforeunload", function (event) {
      if (!dirty) return;
      event.preventDefault();
      event.returnValue = "";
    });
  }

  // A refused save: the banner that says so gets the focus and is brought into view (it was half off screen).
  var banner = document.querySelector("[data-error-banner]");
  if (banner) {
    banner.focus({ preventScroll: true });
    banner.scrollIntoView({ block: "center" });
  }

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
