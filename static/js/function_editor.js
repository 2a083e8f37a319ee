/* Sluice function editor page: CodeMirror over the code textarea, id from the name, starter templates,
   name/description from the docstring's frontmatter, the failing line marked, and Ctrl/Cmd+S to save. */
(function () {
  "use strict";

  var form = document.getElementById("function-form");
  var textarea = document.getElementById("content");
  if (!form || !textarea) return;
  var creating = form.dataset.mode === "create";
  var nameInput = document.getElementById("name");
  var idInput = document.getElementById("id");
  var descriptionInput = document.getElementById("description");

  /* Must match blueprints/console.py slugify(): accents dropped, then runs of anything but a-z0-9 become "_". */
  function slugify(name) {
    return name.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
      .replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 64).replace(/_+$/, "");
  }

  /* The `key: value` lines of the module docstring, read as the server reads them (first line exactly """). */
  function frontmatter(code) {
    var lines = code.split(/\r\n|\r|\n/);
    var result = {};
    if (!lines.length || lines[0].trim() !== '"""') return result;
    for (var i = 1; i < lines.length; i++) {
      if (lines[i].indexOf('"""') !== -1) break;
      var match = /^\s*([a-z_]+):(.*)$/i.exec(lines[i]);
      if (match) result[match[1]] = match[2].trim();
    }
    return result;
  }

  /* A field counts as "filled by us" while it still holds what we put there, so typing over it wins. */
  function autofill(input, value) {
    if (!input || input.readOnly || value === undefined) return false;
    var ours = input.dataset.autofilled;
    if (input.value.trim() === "" || (ours !== undefined && input.value === ours)) {
      if (input.value !== value) {
        input.value = value;
        input.dataset.autofilled = value;
        return true;
      }
    }
    return false;
  }

  function deriveId() {
    if (!creating || !idInput || idInput.dataset.touched === "1") return;
    idInput.value = slugify(nameInput.value);
  }

  if (creating && idInput) {
    if (idInput.value && idInput.value !== slugify(nameInput.value)) idInput.dataset.touched = "1";
    idInput.addEventListener("input", function () {
      idInput.dataset.touched = idInput.value ? "1" : "";
    });
    nameInput.addEventListener("input", deriveId);
  }
  [nameInput, descriptionInput].forEach(function (input) {
    if (input) input.addEventListener("input", function () { delete input.dataset.autofilled; });
  });

  function applyFrontmatter() {
    var manifest = frontmatter(textarea.value);
    if (autofill(nameInput, manifest.title)) deriveId();
    autofill(descriptionInput, manifest.description);
  }

  var dirty = false;
  textarea.addEventListener("input", function () {
    dirty = true;
    applyFrontmatter();
  });
  form.addEventListener("input", function () { dirty = true; });
  form.addEventListener("submit", function () {
    dirty = false;
    var status = form.querySelector("[data-save-status]");
    if (status) status.textContent = "Saving…";
  });
  window.addEventListener("beforeunload", function (event) {
    if (dirty) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

  var editor = null;
  if (window.SluiceEditor) {
    editor = window.SluiceEditor.fromTextarea(textarea, {
      readOnly: textarea.dataset.readonly === "1",
      onSave: function () { form.requestSubmit(); },
    });
    var line = parseInt(textarea.dataset.errorLine || "", 10);
    if (line > 0) editor.markErrorLine(line, textarea.dataset.errorMessage || "This line fails to load");
  }

  /* Starter templates: the links work without scripts (they reload the page); here they swap the code in place. */
  var sourcesNode = document.getElementById("starter-sources");
  var starters = sourcesNode ? JSON.parse(sourcesNode.textContent) : {};
  function isUntouchedStarter(code) {
    return Object.keys(starters).some(function (kind) { return starters[kind] === code; }) || code.trim() === "";
  }
  document.querySelectorAll("[data-starter]").forEach(function (choice) {
    choice.addEventListener("click", function (event) {
      var kind = choice.dataset.starter;
      if (!(kind in starters)) return;
      event.preventDefault();
      var current = editor ? editor.getValue() : textarea.value;
      if (!isUntouchedStarter(current) && !window.confirm("Replace the code you wrote with the " + kind + " template?")) {
        return;
      }
      if (editor) {
        editor.clearErrors();
        editor.setValue(starters[kind]);
      } else {
        textarea.value = starters[kind];
      }
      document.querySelectorAll("[data-starter]").forEach(function (other) {
        other.setAttribute("aria-pressed", other === choice ? "true" : "false");
      });
      applyFrontmatter();
      if (history.replaceState) history.replaceState(null, "", choice.href);
    });
  });

  /* Ctrl/Cmd+S saves from anywhere on the page; inside the editor, its own binding has already done it. */
  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || !(event.ctrlKey || event.metaKey) || event.altKey) return;
    if (event.key !== "s" && event.key !== "S") return;
    event.preventDefault();
    form.requestSubmit();
  });

  /* The starter choices are links styled as toggle buttons; Space presses them as it would a button. */
  document.querySelectorAll("[data-starter]").forEach(function (choice) {
    choice.addEventListener("keydown", function (event) {
      if (event.key === " ") {
        event.preventDefault();
        choice.click();
      }
    });
  });

  /* "Line N, column C" in the error box is a link to the code field; here it brings the editor to that line
     (scrolled into view and marked) and gives it the focus, with the keyboard as with the mouse. */
  var errorLine = document.querySelector(".code-error-line");
  if (errorLine && editor) {
    errorLine.addEventListener("click", function (event) {
      event.preventDefault();
      var view = editor.view;
      var doc = view.state.doc;
      // The line is already marked (once: marking again would list the error twice); put the cursor on it.
      var line = doc.line(Math.min(Math.max(parseInt(textarea.dataset.errorLine, 10) || 1, 1), doc.lines));
      var column = parseInt(textarea.dataset.errorColumn || "1", 10) || 1;
      var at = line.from + Math.min(Math.max(column - 1, 0), line.length);
      view.dispatch({ selection: { anchor: at }, scrollIntoView: true });
      editor.focus();
    });
  }

  // Name, description and id on a fresh page follow the starter's docstring, but stay editable.
  if (creating) applyFrontmatter();
  dirty = false;
})();
