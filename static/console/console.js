// The console's small script: confirmations, status refresh without reload, Test connection.
"use strict";

function csrfToken() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

function formatTime(iso) {
  if (!iso) return "—";
  // The server's time zone and its Y-m-d H:i:s layout, so refreshed and rendered times agree.
  const options = {
    timeZone: document.body.dataset.timeZone || "UTC",
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
  };
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat("en-GB", options).formatToParts(new Date(iso)).map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

let labelTable = null;

function label(vocabulary, value) {
  // The server's words for a value (the page carries its table), so a refresh never renames a badge.
  if (labelTable === null) {
    const script = document.getElementById("console-labels");
    labelTable = script ? JSON.parse(script.textContent) : {};
  }
  return (labelTable[vocabulary] || {})[value] || value;
}

function summarize(status) {
  const users = status.users.filter((u) => u.active !== false);
  const passes = [];
  const due = [];
  for (const u of users) {
    for (const kind of ["contacts", "calendar"]) {
      const last = u[kind].last_pass;
      if (last) passes.push(last.finished_at || last.started_at);
      if (u[kind].next_due) due.push(u[kind].next_due);
    }
  }
  const byTime = (a, b) => new Date(a) - new Date(b);
  passes.sort(byTime);
  due.sort(byTime);
  return {
    healthy: users.filter((u) => u.state === "healthy").length,
    unhealthy: users.filter((u) => ["backing_off", "held", "failing"].includes(u.state)).length,
    last_pass: passes.length ? passes[passes.length - 1] : null,
    next_pass: due.length ? due[0] : null,
  };
}

function setField(scope, name, text) {
  const el = scope.querySelector(`[data-field="${name}"]`);
  if (el) el.textContent = text;
  return el;
}

function applyStatus(scope, status) {
  const badge = setField(scope, "state", label("state", status.state));
  if (badge) badge.className = `badge state-${status.state}`;
  setField(scope, "reason", status.reason || "");
  setField(scope, "since", formatTime(status.since));
  setField(scope, "queue_depth", String(status.queue_depth));
  const figures = summarize(status);
  setField(scope, "healthy", String(figures.healthy));
  setField(scope, "unhealthy", String(figures.unhealthy));
  setField(scope, "last_pass", formatTime(figures.last_pass));
  setField(scope, "next_pass", formatTime(figures.next_pass));
  const degraded = scope.querySelector('[data-field="degraded"]');
  if (degraded) degraded.hidden = !status.degraded;
  // Sync now only while running (the server refuses it otherwise).
  for (const button of document.querySelectorAll("[data-needs-running]")) {
    button.disabled = status.state !== "running";
    button.title = button.disabled ? "Start the synchronizer first." : "";
  }
  const start = scope.querySelector('[data-role="start"]');
  const stop = scope.querySelector('[data-role="stop"]');
  if (start) start.hidden = !["stopped", "failed"].includes(status.state);
  if (stop) stop.hidden = !["running", "starting"].includes(status.state);
  for (const u of status.users) applyUser(u);
}

function applyUser(u) {
  const row = document.querySelector(`tr[data-user="${CSS.escape(u.email)}"]`);
  if (!row) return;
  const health = setField(row, "health", label("user_state", u.state));
  if (health) health.className = `badge health-${u.state}`;
  const reason = row.querySelector('[data-field="reason"]');
  if (reason) {
    reason.textContent = ["healthy", "inactive"].includes(u.state) ? "" : u.reason || "";
    reason.hidden = !reason.textContent;
    reason.className = `small reason-${u.state}`;
  }
  for (const kind of ["contacts", "calendar"]) {
    const last = u[kind].last_pass;
    setField(row, `${kind}_last`, last && last.finished_at ? formatTime(last.finished_at) : "—");
    const state = setField(row, `${kind}_state`, label("user_state", u[kind].state));
    if (state) state.className = `badge small health-${u[kind].state}`;
  }
  // A pass in flight shows its progress (Sync now / Sync all).
  let done = 0, total = 0, running = false;
  for (const kind of ["contacts", "calendar"]) {
    const last = u[kind].last_pass;
    if (last && last.outcome === "running") {
      running = true;
      done += last.progress.done;
      total += last.progress.total;
    }
  }
  const bar = row.querySelector('[data-field="progress"]');
  if (bar) {
    bar.hidden = !running;
    bar.value = total ? Math.round((100 * done) / total) : 0;
  }
}

async function refresh(scope) {
  try {
    const response = await fetch(scope.dataset.statusUrl, {
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-Console-Poll": "1" },
    });
    if (response.status === 401) window.location.reload(); // the session ended: back to the login page
    else if (response.ok) applyStatus(scope, await response.json());
  } catch (err) {
    // Offline or the server restarting: keep the last known values, try again next tick.
  }
}

function startRefreshing() {
  const scopes = document.querySelectorAll("[data-status-url]");
  if (!scopes.length) return;
  const tick = () => scopes.forEach(refresh);
  setInterval(tick, 3000);
}

function detailsOf(text) {
  // The technical detail of an error, one click away (O4).
  const details = document.createElement("details");
  details.className = "detail";
  const summary = document.createElement("summary");
  summary.textContent = "Details";
  const pre = document.createElement("pre");
  pre.textContent = text;
  details.append(summary, pre);
  return details;
}

async function testConnection(form) {
  const out = document.querySelector('[data-field="connection-report"]');
  out.textContent = "Testing…";
  let response, report;
  try {
    response = await fetch(form.dataset.testConnection, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
    });
    report = await response.json();
  } catch (err) {
    out.textContent = "The console could not reach its server; try again.";
    return;
  }
  out.replaceChildren();
  const head = document.createElement("p");
  head.className = response.ok && report.ok ? "ok" : "error";
  head.dataset.field = "connection-sentence";
  head.textContent = response.ok ? (report.ok ? "Connection OK." : `Connection failed: ${report.error}`) : report.detail;
  out.append(head);
  // Only the steps that succeeded: the one that failed is the sentence above.
  if (response.ok && report.tried && report.tried.length) {
    const list = document.createElement("ul");
    for (const step of report.tried) {
      const item = document.createElement("li");
      item.textContent = step;
      list.append(item);
    }
    out.append(document.createTextNode("Tried:"), list);
  }
  if (response.ok && report.detail) out.append(detailsOf(report.detail));
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  if (form.dataset.testConnection) {
    event.preventDefault();
    testConnection(form);
  }
});

document.addEventListener("DOMContentLoaded", startRefreshing);

// Field mapping: the CRM and Exchange choices follow the entity chosen for a new row.
function fillSelect(select, choices) {
  select.replaceChildren(...choices.map(([value, label]) => new Option(label, value)));
}

document.addEventListener("change", (event) => {
  const form = event.target.closest("[data-mapping-editor]");
  if (!form || !event.target.name.endsWith("entity")) return;
  const vocabulary = JSON.parse(document.getElementById("mapping-vocabulary").textContent);
  const choices = vocabulary[event.target.value];
  if (!choices) return;
  fillSelect(form.querySelector("select[name$=crm_field]"), choices.crm);
  fillSelect(form.querySelector("select[name$=exchange_field]"), choices.exchange);
  fillSelect(form.querySelector("select[name$=direction]"), choices.direction);
});

// Settings: only the fields of the chosen backend and authentication (as the server renders them;
// hidden fields are still posted, so nothing is lost by switching back and forth).
// A hybrid environment (H1) shows the connection of every backend its sync users have of their own.
function applies(condition, backend, authType, usersBackends) {
  const graph = backend === "graph" || usersBackends.includes("graph");
  const ews = !["graph", "domino"].includes(backend) || usersBackends.includes("ews");
  const domino = backend === "domino" || usersBackends.includes("domino");
  return {
    "": true,
    ews: ews,
    "ews-password": (ews && ["ntlm", "basic"].includes(authType)) || domino,
    oauth: graph || (ews && authType === "oauth2"),
    graph: graph,
    domino: domino,
    tls: graph || domino,
  }[condition];
}

function showSettingsFields(form) {
  const backend = form.querySelector("[name=backend]");
  const authType = form.querySelector("[name=auth_type]");
  if (!backend || !authType) return;
  for (const row of form.querySelectorAll("[data-when]")) {
    const usersBackends = (form.dataset.usersBackends || "").split(" ").filter(Boolean);
    row.hidden = !applies(row.dataset.when, backend.value, authType.value, usersBackends);
  }
}

document.addEventListener("change", (event) => {
  const form = event.target.closest("[data-settings-form]");
  if (form && ["backend", "auth_type"].includes(event.target.name)) showSettingsFields(form);
});

// Environment tabs: the server renders the tab asked for (?tab=); a click shows another at once
// and keeps the address in step, so a reload or a shared link opens the same tab.
function showTab(name, remember) {
  const panels = [...document.querySelectorAll("[data-tab-panel]")];
  if (!panels.some((panel) => panel.id === name)) return false;
  for (const panel of panels) panel.hidden = panel.id !== name;
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  if (remember) {
    const url = new URL(window.location.href);
    url.searchParams.set("tab", name);
    url.hash = "";
    window.history.replaceState(null, "", url);
  }
  return true;
}

document.addEventListener("click", (event) => {
  const tab = event.target.closest("[data-tab]");
  if (!tab || event.ctrlKey || event.metaKey || event.shiftKey) return;
  if (showTab(tab.dataset.tab, true)) event.preventDefault();
});

// Older links name a section by its anchor (#settings): open that tab.
document.addEventListener("DOMContentLoaded", () => {
  if (window.location.hash) showTab(window.location.hash.slice(1), true);
});
