"""Read a form out of a rendered page and submit it the way a browser would (successful controls only)."""

from __future__ import annotations

from html.parser import HTMLParser

from werkzeug.datastructures import MultiDict


class _Form:
    def __init__(self, attrs: dict):
        self.attrs = attrs
        self.fields: list[tuple[str, str]] = []


class _Parser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self._form: _Form | None = None
        self._textarea: tuple[str, list[str]] | None = None
        self._select: dict | None = None
        self._option: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = _Form(attrs)
            self.forms.append(self._form)
        if self._form is None:
            return
        name = attrs.get("name")
        if tag == "input" and name is not None and "disabled" not in attrs:
            kind = attrs.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in attrs:
                return
            default = "on" if kind in ("checkbox", "radio") else ""
            self._form.fields.append((name, attrs.get("value", default)))
        elif tag == "textarea" and name is not None:
            self._textarea = (name, [])
        elif tag == "select" and name is not None:
            self._select = {"name": name, "options": [], "selected": None}
        elif tag == "option" and self._select is not None:
            self._option = {"value": attrs.get("value"), "text": [], "selected": "selected" in attrs}

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1].append(data)
        if self._option is not None:
            self._option["text"].append(data)

    def handle_endtag(self, tag):
        if tag == "textarea" and self._textarea is not None:
            name, parts = self._textarea
            text = "".join(parts)
            if text.startswith("\n"):
                text = text[1:]  # as the HTML parser of a browser does
            self._form.fields.append((name, text))
            self._textarea = None
        elif tag == "option" and self._option is not None:
            self._close_option()
        elif tag == "select" and self._select is not None:
            if self._option is not None:
                self._close_option()
            options = self._select["options"]
            chosen = self._select["selected"] or (options[0] if options else None)
            if chosen is not None:
                self._form.fields.append((self._select["name"], chosen))
            self._select = None
        elif tag == "form":
            self._form = None

    def _close_option(self):
        option = self._option
        value = option["value"] if option["value"] is not None else "".join(option["text"]).strip()
        self._select["options"].append(value)
        if option["selected"]:
            self._select["selected"] = value
        self._option = None


def read_form(html: bytes | str, testid: str | None = None, action: str | None = None) -> MultiDict:
    """The data a browser would send for the form with ``data-testid=testid`` (or posting to ``action``)."""
    parser = _Parser()
    parser.feed(html.decode() if isinstance(html, bytes) else html)
    for form in parser.forms:
        if testid is not None and form.attrs.get("data-testid") != testid:
            continue
        if action is not None and form.attrs.get("action") != action:
            continue
        return MultiDict(form.fields)
    raise AssertionError(f"no form {testid or action} on the page")
