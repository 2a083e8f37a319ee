/* Sluice console: in-place switches and delete confirmation for the functions pages.
   Everything here is an enhancement: without it, the switches are forms and delete has a confirmation page. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function apiDetail(response, body) {
    // The API's texts are Open WebUI's, written for scripts; a person next to a switch gets the plain story.
    if (response.status === 404) return "This function no longer exists; reload the list.";
    if (response.status === 401) return "You are signed out; sign in again, then retry.";
    if (response.status === 403) return "Your account may no longer change functions.";
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail)) return body.detail.map(function (e) { return e.msg; }).join("; ");
    return "The change failed (" + response.status + ").";
  }

  function setSwitch(form, on) {
    var button = form.querySelector("button.switch");
    button.setAttribute("aria-pressed", on ? "true" : "false");
    var text = button.querySelector(".switch-text");
    if (text) text.textContent = on ? "On" : "Off";
    // Keep the no-script fallback coherent with what is shown.
    form.querySelector('input[name="state"]').value = on ? "off" : "on";
  }

  /* The counts of active and inactive functions (page head, State filter) follow a switch flipped in place. */
  function countActive(delta) {
    var count = document.querySelector('[data-count="active"]');
    if (!count || !delta) return;
    var active = parseInt(count.textContent, 10) + delta;
    var total = parseInt(count.dataset.total, 10);
    if (isNaN(active) || isNaN(total)) return;
    count.textContent = String(active);
    var labels = { active: ["Active", active], inactive: ["Inactive", total - active] };
    Object.keys(labels).forEach(function (state) {
      var option = document.querySelector('select#status option[value="' + state + '"]');
      if (option) option.textContent = labels[state][0] + " (" + labels[state][1] + ")";
    });
  }

  function showError(form, message) {
    var slot = form.querySelector(".switch-error");
    if (!slot) return;
    slot.textContent = message || "";
    form.classList.toggle("has-error", Boolean(message));
  }

  /* A switch flips at once, calls the JSON API, and shows the server's answer; on failure it flips back and
     says why next to the switch. */
  function onSwitchSubmit(event) {
    var form = event.target.closest("form.switch-form");
    if (!form) return;
    event.preventDefault();
    if (form.dataset.busy === "1") return;
    var button = form.querySelector("button.switch");
    var was = button.getAttribute("aria-pressed") === "true";
    var kind = form.dataset.switch;
    var id = form.dataset.functionId;
    var url = "/api/v1/functions/id/" + encodeURIComponent(id) + "/toggle" + (kind === "global" ? "/global" : "");
    form.dataset.busy = "1";
    button.setAttribute("aria-busy", "true");
    showError(form, "");
    setSwitch(form, !was);
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          if (!response.ok || !body) throw new Error(apiDetail(response, body));
          var now = Boolean(kind === "global" ? body.is_global : body.is_active);
          setSwitch(form, now);
          if (kind === "active" && now !== was) countActive(now ? 1 : -1);
        });
      })
      .catch(function (error) {
        setSwitch(form, was);
        showError(form, error && error.message && error.message !== "Failed to fetch"
          ? error.message : "Could not reach Sluice; nothing changed.");
      })
      .then(function () {
        delete form.dataset.busy;
        button.removeAttribute("aria-busy");
      });
  }

  /* Delete: with scripts, a confirm() and a direct POST; without, the link opens the confirmation page. */
  function onDeleteClick(event) {
    var link = event.target.closest("a[data-confirm-delete]");
    if (!link) return;
    event.preventDefault();
    var name = link.dataset.confirmDelete;
    if (!window.confirm("Delete " + name + "? Its history and every user's valves for it are deleted too.")) return;
    var form = document.createElement("form");
    form.method = "post";
    form.action = link.href;
    // `next` (the list with its filters, sort and page) rides in the link; the server reads it from the form.
    var next = new URL(link.href, window.location.href).searchParams.get("next") || "";
    [["csrf_token", csrfToken()], ["id", link.dataset.functionId], ["next", next]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }

  /* Close an open row menu when focus or a click goes elsewhere, or on Escape. */
  function closeMenus(except) {
    document.querySelectorAll("details.row-menu[open]").forEach(function (menu) {
      if (menu !== except) menu.removeAttribute("open");
    });
  }

  /* The table scrolls sideways in its own box, which clips anything that sticks out of it: a menu placed
     under its button disappeared below the last rows. An open menu is placed against the window instead
     (position: fixed), under its button, or above it when the window has no room below. */
  function placeMenu(menu) {
    var list = menu.querySelector("ul");
    var button = menu.querySelector("summary");
    if (!list || !button) return;
    list.classList.add("is-floating");
    var gap = 4;
    var margin = 8;
    var anchor = button.getBoundingClientRect();
    var height = list.offsetHeight;
    var width = list.offsetWidth;
    var roomBelow = window.innerHeight - anchor.bottom - gap;
    var above = roomBelow < height && anchor.top - gap >= height;
    list.style.top = (above ? anchor.top - gap - height : anchor.bottom + gap) + "px";
    var left = Math.min(anchor.right - width, window.innerWidth - width - margin);
    list.style.left = Math.max(margin, left) + "px";
    list.classList.toggle("opens-up", above);
  }

  function placeOpenMenus() {
    document.querySelectorAll("details.row-menu[open]").forEach(placeMenu);
  }

  /* The list's filters fold away on a phone only; CSS keeps them shown on wider screens through
     ::details-content, and where a browser lacks it, the fold is simply opened there. */
  var filtersPanel = document.querySelector("details[data-filters-panel]");
  if (filtersPanel && window.matchMedia && !(window.CSS && CSS.supports && CSS.supports("selector(::details-content)"))) {
    var wide = window.matchMedia("(min-width: 641px)");
    var openWhenWide = function () { if (wide.matches) filtersPanel.open = true; };
    openWhenWide();
    if (wide.addEventListener) wide.addEventListener("change", openWhenWide);
  }

  /* Search and the filters apply as the admin types (a pause of 300 ms) or picks: the list part of the page is
     fetched and swapped in place, and the address follows (replaceState), so it stays shareable. Without scripts,
     the Apply button sends the same form. */
  var liveFilters = document.querySelector("form[data-live-filters]");
  var results = document.querySelector("[data-function-results]");
  if (liveFilters && results && window.fetch && window.DOMParser && history.replaceState) {
    var filterTimer = null;
    var filterAsked = 0;
    var applyFilters = function () {
      window.clearTimeout(filterTimer);
      var params = new URLSearchParams();
      // The address leaves out what is the default (as the server's links do): sort by last update, and each
      // sort's own first direction (services/function_search.py DEFAULT_DIRECTION).
      var data = new FormData(liveFilters);
      var sort = data.get("sort") || "updated";
      var firstDirection = { name: "asc", id: "asc", type: "asc", updated: "desc", created: "desc" }[sort];
      data.forEach(function (value, key) {
        if (value === "" || (key === "sort" && value === "updated") || (key === "dir" && value === firstDirection)) return;
        params.append(key, value);
      });
      var query = params.toString();
      var url = liveFilters.getAttribute("action") + (query ? "?" + query : "");
      var asked = ++filterAsked;
      results.setAttribute("aria-busy", "true");
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          if (!response.ok) throw new Error(String(response.status));
          return response.text();
        })
        .then(function (text) {
          if (asked !== filterAsked) return;  // a newer search is on its way
          var page = new DOMParser().parseFromString(text, "text/html");
          var fresh = page.querySelector("[data-function-results]");
          if (!fresh) throw new Error("no results in the answer");
          results.innerHTML = fresh.innerHTML;
          var summary = document.querySelector('[data-testid="filters-summary"]');
          var freshSummary = page.querySelector('[data-testid="filters-summary"]');
          if (summary && freshSummary) summary.innerHTML = freshSummary.innerHTML;
          history.replaceState(null, "", url);
        })
        .catch(function () {
          if (asked === filterAsked) liveFilters.submit();  // the plain way still works
        })
        .then(function () { if (asked === filterAsked) results.removeAttribute("aria-busy"); });
    };
    liveFilters.addEventListener("input", function (event) {
      if (event.target.matches('input[type="search"], input[type="text"]')) {
        window.clearTimeout(filterTimer);
        filterTimer = window.setTimeout(applyFilters, 300);
      }
    });
    liveFilters.addEventListener("change", function (event) {
      if (event.target.matches("select")) applyFilters();
    });
    liveFilters.addEventListener("submit", function (event) {
      event.preventDefault();
      applyFilters();
    });
  }

  /* The quick valves dialog: "Valves" in a row opens the valves page's form over the list; saving posts it as the
     page would, and a refused save shows the form again with its errors. Without scripts (or a <dialog>), the link
     is simply the valves page. */
  var valvesDialog = document.querySelector("dialog[data-valves-dialog-box]");
  function dialogBody() { return valvesDialog.querySelector("[data-valves-dialog-body]"); }
  function showValvesForm(text) {
    var page = new DOMParser().parseFromString(text, "text/html");
    var form = page.querySelector('form[data-testid="valves-form"]');
    if (!form) throw new Error("no valves form in the answer");
    var body = dialogBody();
    body.textContent = "";
    var errors = page.querySelector('[data-testid="valves-form-errors"]');
    if (errors) body.appendChild(document.importNode(errors, true));
    body.appendChild(document.importNode(form, true));
    var first = body.querySelector('[role="alert"], input:not([type="hidden"]), select, textarea');
    if (first) first.focus();
  }
  function listNotice(message) {
    var notice = document.querySelector("[data-valves-notice]");
    if (!notice) {
      notice = document.createElement("p");
      notice.className = "flash flash-success";
      notice.setAttribute("role", "status");
      notice.dataset.valvesNotice = "1";
      var head = document.querySelector(".page-head");
      if (head) head.insertAdjacentElement("afterend", notice);
    }
    notice.textContent = message;
  }
  if (valvesDialog && typeof valvesDialog.showModal === "function") {
    var opener = null;
    document.addEventListener("click", function (event) {
      var link = event.target.closest("a[data-valves-dialog]");
      if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
      event.preventDefault();
      opener = link;
      valvesDialog.querySelector("h2").textContent = "Valves · " + (link.dataset.functionName || "");
      valvesDialog.querySelector("[data-valves-dialog-page]").href = link.href;
      dialogBody().textContent = "Loading…";
      valvesDialog.showModal();
      fetch(link.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) { return response.text(); })
        .then(showValvesForm)
        .catch(function () { window.location.href = link.href; });
    });
    valvesDialog.addEventListener("submit", function (event) {
      var form = event.target.closest('form[data-testid="valves-form"]');
      if (!form) return;
      event.preventDefault();
      var data = new FormData(form);
      if (event.submitter && event.submitter.name) data.append(event.submitter.name, event.submitter.value);
      fetch(form.action, { method: "POST", body: data, credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          return response.text().then(function (text) {
            if (response.ok && response.redirected) {
              var flash = new DOMParser().parseFromString(text, "text/html").querySelector(".flash-success");
              valvesDialog.close();
              listNotice(flash ? flash.textContent : "Valves saved.");
              return;
            }
            showValvesForm(text);
          });
        })
        .catch(function () { form.submit(); });
    });
    valvesDialog.querySelector("[data-valves-dialog-close]").addEventListener("click", function () {
      valvesDialog.close();
    });
    valvesDialog.addEventListener("close", function () {
      dialogBody().textContent = "";
      if (opener) opener.focus();
    });
  }

  document.addEventListener("submit", onSwitchSubmit);
  document.addEventListener("click", function (event) {
    onDeleteClick(event);
    closeMenus(event.target.closest("details.row-menu"));
  });
  // `toggle` does not bubble; listening while it goes down the tree catches every menu's.
  document.addEventListener("toggle", function (event) {
    var menu = event.target;
    if (menu.matches && menu.matches("details.row-menu") && menu.open) {
      closeMenus(menu);
      placeMenu(menu);
    }
  }, true);
  window.addEventListener("scroll", placeOpenMenus, true);
  window.addEventListener("resize", placeOpenMenus);
  // Tabbing past the last item (or back before the button) closes the menu, as a click elsewhere does.
  document.addEventListener("focusout", function (event) {
    var menu = event.target.closest && event.target.closest("details.row-menu[open]");
    if (menu && event.relatedTarget && !menu.contains(event.relatedTarget)) menu.removeAttribute("open");
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var open = document.querySelector("details.row-menu[open]");
    if (open) {
      open.removeAttribute("open");
      open.querySelector("summary").focus();
    }
  });
})();
