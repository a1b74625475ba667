// tether dashboard: refresh the live parts of a page, and send the action forms to the JSON API.
// No framework and no build step: the server renders every page; this file only keeps it fresh.
"use strict";

(function () {
  const body = document.body;
  let refreshSeconds = Number(body.dataset.refresh || 0);
  let timer = null;

  function flash(message, kind) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message;
    box.className = "flash " + (kind || "ok");
    box.hidden = false;
    // Success notes fade once read; errors stay until the next action.
    clearTimeout(flash.timer);
    if (kind !== "error") flash.timer = setTimeout(() => (box.hidden = true), 8000);
  }

  // A region the user is typing in, or whose form they changed, is left alone: a refresh must
  // never throw away what someone is writing.
  function busy(region) {
    const active = document.activeElement;
    // Only fields count: a clicked <summary> or button keeps focus but holds no input.
    if (active && region.contains(active) && active.matches("input, textarea, select")) {
      return true;
    }
    return region.querySelector("form[data-dirty]") !== null;
  }

  function openDetails(region) {
    const open = new Set();
    region.querySelectorAll("details[open]").forEach((d, i) => {
      const row = d.closest("[data-seq]");
      open.add(row ? "seq:" + row.dataset.seq : "i:" + i);
    });
    return open;
  }

  function restoreDetails(region, open) {
    region.querySelectorAll("details").forEach((d, i) => {
      const row = d.closest("[data-seq]");
      const key = row ? "seq:" + row.dataset.seq : "i:" + i;
      if (open.has(key)) d.open = true;
    });
  }

  async function refresh() {
    if (document.hidden) return schedule();
    const state = document.getElementById("refresh-state");
    try {
      const response = await fetch(location.href, { headers: { Accept: "text/html" } });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      document.querySelectorAll("[data-live][id]").forEach((region) => {
        const next = fresh.getElementById(region.id);
        if (!next || busy(region)) return;
        const open = openDetails(region);
        region.replaceWith(next);
        restoreDetails(next, open);
        wireForms(next);
      });
      // A run that ended stops changing: the server stops asking for refreshes.
      refreshSeconds = Number(fresh.body.dataset.refresh || 0);
      if (state) {
        state.textContent = refreshSeconds ? "live · " + new Date().toLocaleTimeString() : "";
        state.classList.remove("stale");
      }
    } catch (err) {
      if (state) {
        state.textContent = "refresh failed (" + err.message + "), retrying";
        state.classList.add("stale");
      }
    }
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (refreshSeconds > 0) timer = setTimeout(refresh, refreshSeconds * 1000);
  }

  function formBody(form) {
    const data = {};
    for (const field of form.querySelectorAll("input[name], textarea[name], select[name]")) {
      // The CSRF token travels in a header, never in the JSON body.
      if (field.hasAttribute("data-csrf")) continue;
      const raw = field.value.trim();
      if (field.hasAttribute("data-json")) {
        if (raw === "") continue;
        try {
          data[field.name] = JSON.parse(raw);
        } catch (err) {
          throw new Error(field.name + " is not valid JSON: " + err.message);
        }
      } else if (field.hasAttribute("data-int")) {
        data[field.name] = Number.parseInt(raw, 10);
      } else if (raw !== "") {
        data[field.name] = raw;
      }
    }
    return data;
  }

  async function submit(event) {
    event.preventDefault();
    const form = event.currentTarget;
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    let payload;
    try {
      payload = formBody(form);
    } catch (err) {
      flash(err.message, "error");
      return;
    }
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      const headers = { "Content-Type": "application/json", Accept: "application/json" };
      const csrf = form.querySelector("[data-csrf]");
      if (csrf && csrf.value) headers["X-CSRF-Token"] = csrf.value;
      const response = await fetch(form.dataset.api, {
        method: "POST",
        headers: headers,
        credentials: "same-origin",
        // data-body="field": that field's JSON is the whole body (e.g. a budget object).
        body: JSON.stringify(form.dataset.body ? payload[form.dataset.body] || {} : payload),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.status === 401) {
        // The session ended (expired, or the token was revoked): sign in again.
        location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
        return;
      }
      if (!response.ok) {
        const error = answer.error || {};
        flash((error.type ? error.type + ": " : "") + (error.message || "HTTP " + response.status), "error");
        return;
      }
      delete form.dataset.dirty;
      if (form.dataset.kind === "fork" && answer.id) {
        location.assign("/runs/" + answer.id);
        return;
      }
      if (form.dataset.next) {
        location.assign(form.dataset.next);
        return;
      }
      flash(form.dataset.done || doneMessage(form.dataset.kind, payload, answer), "ok");
      if (document.activeElement) document.activeElement.blur();
      refreshSeconds = refreshSeconds || 2;
      refresh();
    } catch (err) {
      flash("request failed: " + err.message, "error");
    } finally {
      if (button) button.disabled = false;
    }
  }

  function doneMessage(kind, payload, answer) {
    if (kind === "signal") return "signal '" + payload.name + "' delivered; run is " + answer.status;
    if (kind === "cancel") return "run is " + answer.status;
    if (answer.status) return "done: " + answer.status;
    return "done";
  }

  function wireForms(root) {
    root.querySelectorAll("form[data-api]").forEach((form) => {
      if (form.dataset.wired) return;
      form.dataset.wired = "1";
      form.addEventListener("submit", submit);
      form.addEventListener("input", () => (form.dataset.dirty = "1"));
    });
  }

  // Keyboard: Ctrl/Cmd+Enter submits the form being typed in; on a page with one decision to
  // make, "a" goes to Approve, "e" to the edits, "r" to the rejection reason.
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" || target.tagName === "SELECT");
    if (typing && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      const form = target.closest("form[data-api]");
      if (form) {
        event.preventDefault();
        form.requestSubmit();
      }
      return;
    }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const decide = document.querySelectorAll("[data-hotkeys] .decide");
    if (decide.length !== 1) return;
    const targets = {
      a: 'form[data-kind="approve"] button[type="submit"]',
      e: 'form[data-kind="approve"] textarea[name="edits"]',
      r: 'form[data-kind="reject"] textarea[name="reason"]',
    };
    const selector = targets[event.key];
    const element = selector && decide[0].querySelector(selector);
    if (element) {
      event.preventDefault();
      element.focus();
    }
  });

  wireForms(document);
  schedule();
})();

// The run page's event stream (Server-Sent Events; EventSource resumes with Last-Event-ID).
(function () {
  const list = document.getElementById("run-events");
  if (!list || typeof EventSource === "undefined") return;
  const text = document.getElementById("model-text");
  const source = new EventSource(list.dataset.eventsUrl);
  function describe(event) {
    const d = event.data || {};
    const what = d["gen_ai.tool.name"] || d.name || d.status || d.waiting_for || "";
    return (event.seq != null ? "#" + event.seq + " " : "") + event.kind + (what ? " " + what : "");
  }
  function onEvent(message) {
    const event = JSON.parse(message.data);
    if (event.kind === "model_text_delta") {
      text.hidden = false;
      text.textContent += event.data.delta || "";
      return;
    }
    const item = document.createElement("li");
    item.dataset.kind = event.kind;
    item.textContent = describe(event);
    list.appendChild(item);
    if (event.kind === "finished") source.close();
  }
  ["run_started", "resumed", "step_started", "step_retrying", "step_completed", "step_failed",
   "waiting", "signal_received", "suspended", "finished", "model_text_delta", "model_text",
   "tool_call", "approval_requested", "approval_decided"].forEach(function (kind) {
    source.addEventListener(kind, onEvent);
  });
})();


// The run page's trace: collapse waits and gaps on the time axis, zoom it, fold subtrees.
(function () {
  const view = document.getElementById("trace-view");
  if (!view) return;
  const fold = document.getElementById("fold-gaps");
  const zoom = document.getElementById("trace-zoom");
  const collapsed = new Set();
  fold.addEventListener("change", () => (view.dataset.folded = fold.checked ? "1" : "0"));
  zoom.addEventListener("input", () => view.style.setProperty("--zoom", zoom.value));

  function apply() {
    let hideBelow = null;
    view.querySelectorAll(".trace-row[data-span]").forEach((row) => {
      const depth = Number(row.dataset.depth);
      if (hideBelow !== null && depth > hideBelow) {
        row.hidden = true;
        return;
      }
      hideBelow = null;
      row.hidden = false;
      const shut = collapsed.has(row.dataset.span);
      const twisty = row.querySelector(".twisty");
      if (twisty) {
        twisty.textContent = shut ? "▸" : "▾";
        twisty.setAttribute("aria-expanded", shut ? "false" : "true");
      }
      if (shut) hideBelow = depth;
    });
  }

  view.addEventListener("click", (event) => {
    const twisty = event.target.closest(".twisty");
    if (!twisty) return;
    const span = twisty.closest(".trace-row").dataset.span;
    if (collapsed.has(span)) collapsed.delete(span);
    else collapsed.add(span);
    apply();
  });
  // The live refresh replaces the rows: keep what the reader folded.
  new MutationObserver(apply).observe(view, { childList: true });
  apply();
})();
