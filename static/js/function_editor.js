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

  /* Must match blueprints/admin/functions.py slugify(): accents dropped, then runs of anything but a-z0-9 become "_". */
  function slugify(name) {
    return name.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase()
      .replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "").slice(0, 64).replace(/_+$/, "");
  }

  /* The page reads frontmatter by loader/frontmatter.py's rule, so the name shown is the name saved: the docstring
     may follow blank lines and comments (a shebang, a coding line) and a byte-order mark, use ''' or a r/u
     prefix, and have text on its opening line. Python's splitlines() and whitespace are not JavaScript's (\x1c-\x1f
     and \x85 are Python whitespace, the byte-order mark is not), and its IGNORECASE lets [a-z] match four non-ASCII
     letters; the patterns below spell that out. tests/browser/test_editor.py runs both parsers on the same files. */
  var PY_SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
  var PY_LINE_BREAK = /\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]/;
  var PY_STRIP = new RegExp("^[" + PY_SPACE + "]+|[" + PY_SPACE + "]+$", "g");
  var KEY_LINE = new RegExp("^[" + PY_SPACE + "]*([a-z_\\u0130\\u0131\\u017f\\u212a]+):(.*)", "i");
  var DOCSTRING_OPENING = /^[rRuU]?("""|''')/;

  function pyStrip(text) {
    return text.replace(PY_STRIP, "");
  }

  /* Where the docstring that holds the frontmatter opens: {next: index of the line after the opening line,
     quotes: the closing quotes to look for, rest: text after the opening quotes, or null}; null when none. */
  function findOpening(lines) {
    if (pyStrip(lines[0]) === '"""') return { next: 1, quotes: '"""', rest: null };
    for (var index = 0; index < lines.length; index++) {
      var line = index === 0 ? lines[0].replace(/^\ufeff/, "") : lines[index];
      var stripped = pyStrip(line);
      if (stripped === "" || stripped.charAt(0) === "#") continue;
      var match = DOCSTRING_OPENING.exec(stripped);
      if (!match) return null;
      return { next: index + 1, quotes: match[1], rest: stripped.slice(match[0].length) };
    }
    return null;
  }

  /* The manifest: the `key: value` lines of the module docstring, up to the line holding its closing quotes. */
  function frontmatter(code) {
    var manifest = Object.create(null);
    var lines = String(code).split(PY_LINE_BREAK);
    var opening = findOpening(lines);
    if (!opening) return manifest;
    var body = lines.slice(opening.next);
    if (opening.rest !== null) body.unshift(opening.rest);
    for (var i = 0; i < body.length; i++) {
      if (body[i].indexOf(opening.quotes) !== -1) break;
      var match = KEY_LINE.exec(body[i]);
      if (match) manifest[match[1]] = pyStrip(match[2]);
    }
    return manifest;
  }
  window.SluiceFunctionEditor = { frontmatter: frontmatter };

  /* A field the page filled in itself holds the same text as its hidden auto_<field> input (AUTO_FIELDS in
     blueprints/admin/functions.py): it follows the code, and is cleared when the code no longer says. Once the admin
     types into it, it is theirs and is never overwritten; emptied, it follows the code again. */
  function autoOf(input) {
    return input ? form.elements.namedItem("auto_" + input.name) : null;
  }

  function fill(input, value) {
    var auto = autoOf(input);
    if (!auto || input.readOnly) return;
    if (input.value.trim() !== "" && input.value !== auto.value) return;
    input.value = value;
    auto.value = value;
  }

  [nameInput, idInput, descriptionInput].forEach(function (input) {
    if (!input || !autoOf(input)) return;
    input.addEventListener("input", function () {
      autoOf(input).value = "";
      if (input === idInput) checkId();
    });
  });

  function deriveId() {
    if (!creating || !idInput) return;
    var before = idInput.value;
    fill(idInput, slugify(nameInput.value));
    if (idInput.value !== before) checkId();
  }
  if (creating && idInput) nameInput.addEventListener("input", deriveId);

  function applyFrontmatter() {
    var manifest = frontmatter(textarea.value);
    fill(nameInput, manifest.title || "");
    fill(descriptionInput, manifest.description || "");
    deriveId();
  }

  /* The id's help says when a function with that id exists already (the server says so for the id it filled in;
     here /admin/functions/id-available answers for ids typed or derived since), so a clash is fixed before saving, not after. */
  var idTaken = form.querySelector(".id-taken");
  var checkTimer = null;
  var checkCount = 0;
  function checkId() {
    if (!idTaken || !form.dataset.idCheckUrl) return;
    window.clearTimeout(checkTimer);
    var id = idInput.value.trim().toLowerCase();
    var asked = ++checkCount;
    if (!/^[a-z0-9_]{1,64}$/.test(id)) {
      idTaken.hidden = true;
      return;
    }
    checkTimer = window.setTimeout(function () {
      // A check that always answers 200 {available}: a 404 for a free id showed as an error in the console.
      var url = form.dataset.idCheckUrl + "?id=" + encodeURIComponent(id);
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error(String(response.status));
          return response.json();
        })
        .then(function (answer) {
          if (asked !== checkCount) return;  // the id has changed since
          idTaken.hidden = !(answer && answer.valid && answer.available === false);
          var link = idTaken.querySelector("a");
          if (link && form.dataset.editUrl) link.href = form.dataset.editUrl + "?id=" + encodeURIComponent(id);
        })
        .catch(function () {
          if (asked === checkCount) idTaken.hidden = true;  // unknown: saving will say
        });
    }, 300);
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

  // The server filled name, description and id from the same code; this only matters if the browser restored
  // other field values on its own (back and forward).
  if (creating) applyFrontmatter();
  // A page showing a save the server refused holds what was typed, not what is stored: leaving it asks.
  dirty = form.dataset.unsaved === "1";
  // ... and what went wrong gets the focus and is brought into view (it was half off screen): the first message
  // in the form, the box at the top or the one beside a field.
  if (dirty) {
    var problem = form.querySelector('[role="alert"]');
    if (problem) {
      if (!problem.hasAttribute("tabindex")) problem.setAttribute("tabindex", "-1");
      problem.focus({ preventScroll: true });
      problem.scrollIntoView({ block: "center" });
    }
  }
})();
