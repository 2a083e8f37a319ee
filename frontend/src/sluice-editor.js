// Sluice's code editor: CodeMirror 6 bundled into one IIFE that exposes
// window.SluiceEditor. Rebuild with `cd frontend && npm ci && npm run build`.
import { basicSetup } from "codemirror";
import { EditorState, EditorSelection, StateEffect, StateField, RangeSetBuilder, Prec } from "@codemirror/state";
import { EditorView, Decoration, keymap } from "@codemirror/view";
import { indentWithTab } from "@codemirror/commands";
import { indentUnit } from "@codemirror/language";
import { python } from "@codemirror/lang-python";
import { setDiagnostics, lintGutter } from "@codemirror/lint";

// ---- error-line highlighting -------------------------------------------

const addErrorLine = StateEffect.define({ map: (pos, mapping) => mapping.mapPos(pos) });
const clearErrorLines = StateEffect.define();
const errorLineDeco = Decoration.line({ class: "cm-sluice-errorLine" });

// Holds the start positions of the lines marked as errors, mapped through
// edits so the highlight stays on the same code while the user types.
const errorLineField = StateField.define({
  create() { return Decoration.none; },
  update(decos, tr) {
    decos = decos.map(tr.changes);
    for (const e of tr.effects) {
      if (e.is(clearErrorLines)) {
        decos = Decoration.none;
      } else if (e.is(addErrorLine)) {
        const from = tr.state.doc.lineAt(e.value).from;
        let exists = false;
        decos.between(from, from, (f) => { if (f === from) exists = true; });
        if (!exists) decos = decos.update({ add: [errorLineDeco.range(from)], sort: true });
      }
    }
    return decos;
  },
  provide: (f) => EditorView.decorations.from(f),
});

// ---- Enter inside auto-closed triple quotes -------------------------------

// Typing """ gets its closing """ at once (Python's closeBrackets). Enter between the two halves puts the closing
// quotes on a line of their own below, as Enter between brackets does. Without this they stay glued to the end
// of the last line typed (`description: x"""`), and frontmatter readers skip the line holding the closing quotes.
function betweenTripleQuotes(state, pos) {
  const before = state.sliceDoc(Math.max(0, pos - 3), pos);
  return (before === '"""' || before === "'''") && state.sliceDoc(pos, pos + 3) === before;
}

function insertNewlineInTripleQuotes({ state, dispatch }) {
  if (state.readOnly) return false;
  if (!state.selection.ranges.every((r) => r.empty && betweenTripleQuotes(state, r.head))) return false;
  const changes = state.changeByRange((range) => {
    // The body and the closing quotes get the opening line's indentation (a method's docstring is indented).
    const indent = /^[ \t]*/.exec(state.doc.lineAt(range.head).text)[0];
    return {
      changes: { from: range.head, insert: "\n" + indent + "\n" + indent },
      range: EditorSelection.cursor(range.head + 1 + indent.length),
    };
  });
  dispatch(state.update(changes, { scrollIntoView: true, userEvent: "input" }));
  return true;
}

// ---- look ---------------------------------------------------------------

const lightTheme = EditorView.theme({
  "&": {
    backgroundColor: "#ffffff",
    color: "#1f2328",
    border: "1px solid #d0d7de",
    borderRadius: "6px",
    fontSize: "14px",
  },
  "&.cm-focused": {
    outline: "2px solid #0969da",
    outlineOffset: "1px",
  },
  ".cm-scroller": {
    fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', 'Liberation Mono', monospace",
    lineHeight: "1.5",
    overflow: "auto",
  },
  ".cm-content": { padding: "6px 0" },
  ".cm-gutters": {
    backgroundColor: "#f6f8fa",
    color: "#6e7781",
    borderRight: "1px solid #d0d7de",
    borderTopLeftRadius: "6px",
    borderBottomLeftRadius: "6px",
  },
  ".cm-activeLine": { backgroundColor: "#f0f6ff" },
  ".cm-activeLineGutter": { backgroundColor: "#dde9fb", color: "#1f2328" },
  ".cm-sluice-errorLine": { backgroundColor: "#ffe3e3" },
  ".cm-sluice-errorLine.cm-activeLine": { backgroundColor: "#ffd2d2" },
  ".cm-matchingBracket": { backgroundColor: "#c8e6c9", outline: "1px solid #81c784" },
  ".cm-nonmatchingBracket": { backgroundColor: "#ffcdd2" },
  ".cm-tooltip": { fontFamily: "system-ui, sans-serif", fontSize: "13px" },
  ".cm-panels": { fontFamily: "system-ui, sans-serif" },
}, { dark: false });

// ---- helpers ------------------------------------------------------------

function labelFor(textarea) {
  const own = textarea.getAttribute("aria-label");
  if (own) return own;
  const by = textarea.getAttribute("aria-labelledby");
  if (by) {
    const text = by.split(/\s+/)
      .map((id) => document.getElementById(id))
      .filter(Boolean)
      .map((el) => el.textContent.trim())
      .join(" ");
    if (text) return text;
  }
  if (textarea.labels && textarea.labels.length) {
    const text = Array.from(textarea.labels).map((l) => l.textContent.trim()).join(" ");
    if (text) return text;
  }
  return textarea.getAttribute("title") || textarea.name || "Code editor";
}

function clampLine(doc, line) {
  let n = Math.floor(Number(line));
  if (!isFinite(n) || n < 1) n = 1;
  if (n > doc.lines) n = doc.lines;
  return doc.line(n);
}

// ---- the editor ---------------------------------------------------------

function fromTextarea(textarea, options) {
  if (!textarea || textarea.tagName !== "TEXTAREA") {
    throw new TypeError("SluiceEditor.fromTextarea needs a <textarea> element");
  }
  if (textarea.sluiceEditor) return textarea.sluiceEditor;
  const opts = options || {};
  const readOnly = !!opts.readOnly || textarea.readOnly;

  const container = document.createElement("div");
  container.className = "sluice-editor";
  textarea.parentNode.insertBefore(container, textarea.nextSibling);

  const rows = parseInt(textarea.getAttribute("rows"), 10) || 12;
  const sizeTheme = EditorView.theme({
    "&": { maxHeight: "75vh" },
    ".cm-content, .cm-gutter": { minHeight: (rows * 1.5) + "em" },
  });

  let errors = [];
  let editor;

  const syncToTextarea = EditorView.updateListener.of((update) => {
    if (!update.docChanged) return;
    textarea.value = update.state.doc.toString();
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  });

  const saveKeymap = Prec.highest(keymap.of([{
    key: "Mod-s",
    preventDefault: true,
    run: () => {
      if (typeof opts.onSave === "function") opts.onSave(editor);
      return true;
    },
  }]));

  // Screen readers meet the editor, not the hidden textarea: the editable element gets the textarea's label,
  // its description (help text, error message) and its invalid state. The last two are read afresh on every
  // update, and the observer below makes one whenever the page changes them on the textarea.
  const label = labelFor(textarea);
  const contentAttrs = () => {
    const attrs = { "aria-label": label };
    for (const name of ["aria-describedby", "aria-invalid"]) {
      const value = textarea.getAttribute(name);
      if (value && value.trim()) attrs[name] = value.trim();
    }
    if (readOnly) attrs["aria-readonly"] = "true";
    return attrs;
  };

  const view = new EditorView({
    parent: container,
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        saveKeymap,
        Prec.high(keymap.of([{ key: "Enter", run: insertNewlineInTripleQuotes }])),
        basicSetup,
        keymap.of([indentWithTab]),
        indentUnit.of("    "),
        EditorState.tabSize.of(4),
        python(),
        lintGutter(),
        errorLineField,
        lightTheme,
        sizeTheme,
        EditorView.contentAttributes.of(contentAttrs),
        EditorState.readOnly.of(readOnly),
        syncToTextarea,
      ],
    }),
  });

  const describedBy = new MutationObserver(() => view.dispatch({}));
  describedBy.observe(textarea, { attributes: true, attributeFilter: ["aria-describedby", "aria-invalid"] });

  // Hide the textarea but keep it in the form: it is what gets POSTed.
  const previousDisplay = textarea.style.display;
  textarea.style.display = "none";
  textarea.setAttribute("aria-hidden", "true");

  // Clicking the textarea's <label> should focus the editor instead.
  const labelClick = (e) => { e.preventDefault(); view.focus(); };
  const labels = textarea.labels ? Array.from(textarea.labels) : [];
  labels.forEach((l) => l.addEventListener("click", labelClick));

  // Belt and braces: make sure the form posts the latest text.
  const form = textarea.form;
  const onSubmit = () => { textarea.value = view.state.doc.toString(); };
  if (form) form.addEventListener("submit", onSubmit, true);

  editor = {
    view,
    textarea,
    getValue() { return view.state.doc.toString(); },
    setValue(text) {
      const value = text == null ? "" : String(text);
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: value } });
      textarea.value = value;
    },
    focus() { view.focus(); },
    markErrorLine(line, message) {
      const l = clampLine(view.state.doc, line);
      // Underline from the first non-blank character, not the indentation.
      const indent = /^\s*/.exec(l.text)[0].length;
      errors = errors.concat([{
        from: indent < l.length ? l.from + indent : l.from,
        to: l.to,
        severity: "error",
        message: message == null || message === "" ? "Error on line " + l.number : String(message),
        source: "Sluice",
      }]);
      view.dispatch(setDiagnostics(view.state, errors));
      view.dispatch({
        effects: [
          addErrorLine.of(l.from),
          EditorView.scrollIntoView(l.from, { y: "center" }),
        ],
      });
    },
    clearErrors() {
      errors = [];
      view.dispatch(setDiagnostics(view.state, []));
      view.dispatch({ effects: clearErrorLines.of(null) });
    },
    destroy() {
      labels.forEach((l) => l.removeEventListener("click", labelClick));
      if (form) form.removeEventListener("submit", onSubmit, true);
      describedBy.disconnect();
      textarea.value = view.state.doc.toString();
      view.destroy();
      container.remove();
      textarea.style.display = previousDisplay;
      textarea.removeAttribute("aria-hidden");
      delete textarea.sluiceEditor;
      if (textarea.parentElement) textarea.parentElement.removeAttribute("data-editor-ready");
      textarea.removeAttribute("data-editor-ready");
    },
  };

  textarea.sluiceEditor = editor;
  container.setAttribute("data-editor-ready", "1");
  textarea.setAttribute("data-editor-ready", "1");
  if (textarea.parentElement) textarea.parentElement.setAttribute("data-editor-ready", "1");
  return editor;
}

window.SluiceEditor = { fromTextarea, version: "1" };
