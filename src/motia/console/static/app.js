// pymotia console: plain JavaScript, no build step, no network access beyond this server.
// Every value from the store is put on the page with textContent, never as HTML.
"use strict";

const API = "/__motia/api/";
const PAGE = 50;
const MAX_FEED = 200;

const $ = (id) => document.getElementById(id);

const view = {
  scope: null,      // the scope shown
  prefix: "",
  cursors: [null],  // `after` of each page seen so far; the last one is the current page
  next: null,       // `after` of the next page, or null
  entry: null,      // the entry in the editor: {key, value, version, expires_at}, or null for a new key
  conflict: null,   // the 409 body while a conflict is shown
};

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, params = {}, options = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(name, String(value));
  }
  const url = API + path + (query.toString() ? `?${query}` : "");
  const init = { credentials: "same-origin", ...options, headers: { Accept: "application/json", ...(options.headers || {}) } };
  const response = await fetch(url, init);
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = { error: text };
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function preview(value, limit = 120) {
  const text = JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

function relativeTime(seconds) {
  const abs = Math.abs(seconds);
  const [n, unit] = abs < 60 ? [abs, "s"] : abs < 3600 ? [abs / 60, "min"] : abs < 86400 ? [abs / 3600, "h"] : [abs / 86400, "d"];
  const text = `${Math.round(n)} ${unit}`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

function expiryCell(expiresAt) {
  if (expiresAt === null || expiresAt === undefined) return el("span", { class: "muted" }, "never");
  const date = new Date(expiresAt * 1000);
  return el("span", { title: date.toISOString() }, relativeTime(expiresAt - Date.now() / 1000));
}

let toastTimer = null;
function toast(message, kind = "info") {
  const box = $("toast");
  box.textContent = message;
  box.dataset.kind = kind;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
}

function report(error) {
  console.error(error);
  toast(error.message || String(error), "error");
}

// -- confirmation dialog ------------------------------------------------------------------------

function confirmDialog(message, { typed = null, action = "Confirm" } = {}) {
  const dialog = $("confirm");
  $("confirm-text").textContent = message;
  $("confirm-ok").textContent = action;
  const input = $("confirm-typed");
  $("confirm-typed-label").hidden = typed === null;
  $("confirm-expected").textContent = typed || "";
  input.value = "";
  $("confirm-ok").disabled = typed !== null;
  input.oninput = () => { $("confirm-ok").disabled = input.value !== typed; };
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    (typed === null ? $("confirm-ok") : input).focus();
  });
}

// -- scopes and steps ---------------------------------------------------------------------------

async function loadInfo() {
  const info = await api("info");
  $("state-url").textContent = info.state_url;
  document.title = `pymotia console · ${info.state_url}`;
}

async function loadScopes() {
  const { scopes } = await api("scopes");
  const list = $("scopes");
  list.replaceChildren(
    ...scopes.map((scope) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            class: scope.name === view.scope ? "scope active" : "scope",
            dataset: { scope: scope.name },
            onclick: () => selectScope(scope.name),
          },
          el("span", { class: "name" }, scope.name),
          el("span", { class: "badge" }, scope.count),
        ),
      ),
    ),
  );
  $("no-scopes").hidden = scopes.length > 0;
  const shown = scopes.find((scope) => scope.name === view.scope);
  if (shown) $("scope-count").textContent = `${shown.count} key${shown.count === 1 ? "" : "s"}`;
}

function triggerText(trigger) {
  switch (trigger.type) {
    case "http": return `${trigger.method} ${trigger.path}`;
    case "cron": return `cron ${trigger.expression}`;
    case "queue": return `queue ${trigger.topic}`;
    case "state": {
      const parts = [trigger.scope, trigger.key].filter((part) => part !== null);
      return `state ${parts.length ? parts.join(" / ") : "(any)"}`;
    }
    case "stream": {
      const parts = [trigger.group_id, trigger.item_id].filter((part) => part !== null);
      return `stream ${trigger.stream_name}${parts.length ? ` ${parts.join(" / ")}` : ""}`;
    }
    default: return trigger.type;
  }
}

async function loadSteps() {
  const { steps } = await api("steps");
  $("steps").replaceChildren(
    ...steps.map((step) =>
      el(
        "li",
        { class: "step", title: step.description || "" },
        el("span", { class: "name" }, step.name),
        el("span", { class: "triggers" }, ...step.triggers.map((t) => el("span", { class: `trigger ${t.type}` }, triggerText(t)))),
      ),
    ),
  );
  $("no-steps").hidden = steps.length > 0;
}

// -- keys of a scope ----------------------------------------------------------------------------

function selectScope(scope) {
  view.scope = scope;
  view.prefix = "";
  view.cursors = [null];
  $("prefix").value = "";
  closeEditor();
  history.replaceState(null, "", `#scope=${encodeURIComponent(scope)}`);
  for (const button of document.querySelectorAll("#scopes .scope")) {
    button.classList.toggle("active", button.dataset.scope === scope);
  }
  loadItems().catch(report);
}

async function loadItems() {
  if (view.scope === null) return;
  const after = view.cursors[view.cursors.length - 1];
  const page = await api("items", { scope: view.scope, prefix: view.prefix, after, limit: PAGE });
  view.next = page.next;
  $("empty-browser").hidden = true;
  $("scope-view").hidden = false;
  $("scope-title").textContent = view.scope;
  $("scope-count").textContent = `${page.count} key${page.count === 1 ? "" : "s"}`;
  $("keys").replaceChildren(
    ...page.items.map((entry) =>
      el(
        "tr",
        {
          class: view.entry && view.entry.key === entry.key ? "selected" : "",
          dataset: { key: entry.key },
          tabindex: "0",
          onclick: () => openEditor(entry),
          onkeydown: (event) => { if (event.key === "Enter") openEditor(entry); },
        },
        el("td", { class: "key" }, entry.key),
        el("td", { class: "value" }, el("code", {}, preview(entry.value))),
        el("td", { class: "num" }, entry.version),
        el("td", {}, expiryCell(entry.expires_at)),
      ),
    ),
  );
  $("no-keys").hidden = page.items.length > 0;
  const first = (view.cursors.length - 1) * PAGE + 1;
  $("page-info").textContent = page.items.length ? `${first}–${first + page.items.length - 1}` : "";
  $("prev-page").disabled = view.cursors.length <= 1;
  $("next-page").disabled = page.next === null;
}

// -- the editor ---------------------------------------------------------------------------------

function setEditorMeta(entry) {
  const meta = $("editor-meta");
  if (!entry) {
    meta.textContent = "new key";
    return;
  }
  meta.replaceChildren(`version ${entry.version} · expires `, expiryCell(entry.expires_at));
}

function openEditor(entry) {
  view.entry = entry;
  hideConflict();
  const editor = $("editor");
  editor.hidden = false;
  $("editor-key").value = entry ? entry.key : "";
  $("editor-key").readOnly = Boolean(entry);
  setEditorText(entry ? JSON.stringify(entry.value, null, 2) : "{\n  \n}");
  $("editor-ttl").value = "";
  $("editor-delete").hidden = !entry;
  setEditorMeta(entry);
  validateEditor();
  for (const row of document.querySelectorAll("#keys tr")) {
    row.classList.toggle("selected", Boolean(entry) && row.dataset.key === entry.key);
  }
  (entry ? $("editor-value") : $("editor-key")).focus();
}

function setEditorText(text) {
  const area = $("editor-value");
  area.value = text;
  area.rows = Math.min(24, Math.max(6, text.split("\n").length + 1));
}

function closeEditor() {
  view.entry = null;
  hideConflict();
  $("editor").hidden = true;
  for (const row of document.querySelectorAll("#keys tr.selected")) row.classList.remove("selected");
}

function parseEditor() {
  const text = $("editor-value").value;
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, error: `Not valid JSON: ${error.message}` };
  }
}

function validateEditor() {
  const parsed = parseEditor();
  $("editor-error").textContent = parsed.ok ? "" : parsed.error;
  $("editor-save").disabled = !parsed.ok;
  return parsed;
}

async function saveEditor(ifVersion) {
  const parsed = validateEditor();
  const key = $("editor-key").value;
  if (!parsed.ok) return;
  if (!key) {
    $("editor-error").textContent = "The key needs a name.";
    return;
  }
  const body = { value: parsed.value, if_version: ifVersion };
  const ttl = $("editor-ttl").value;
  if (ttl !== "") body.ttl = Number(ttl);
  try {
    const saved = await api("entry", { scope: view.scope, key }, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    hideConflict();
    view.entry = saved;
    $("editor-key").readOnly = true;
    $("editor-delete").hidden = false;
    $("editor-ttl").value = "";
    setEditorMeta(saved);
    toast(`Saved ${key} (version ${saved.version})`);
    await Promise.all([loadItems(), loadScopes()]);
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) {
      showConflict(error.body, ifVersion);
      loadItems().catch(report);  // the list shows the version that won
    } else {
      report(error);
    }
  }
}

function showConflict(body, triedVersion) {
  view.conflict = body;
  const current = body.current;
  $("conflict-text").textContent = current
    ? triedVersion === 0
      ? `the key ${current.key} already exists (version ${current.version}). Your value was not saved.`
      : `this key changed since you opened it (you edited version ${triedVersion}, it is now version ${current.version}). Your edit was not saved.`
    : "this key was deleted since you opened it. Your edit was not saved.";
  $("conflict-current").textContent = current ? JSON.stringify(current.value, null, 2) : "(deleted)";
  $("conflict-load").hidden = !current;
  $("conflict").hidden = false;
}

function hideConflict() {
  view.conflict = null;
  $("conflict").hidden = true;
}

async function deleteKey() {
  const entry = view.entry;
  if (!entry) return;
  const ok = await confirmDialog(`Delete the key “${entry.key}” from “${view.scope}”?`, { action: "Delete" });
  if (!ok) return;
  try {
    await api("entry", { scope: view.scope, key: entry.key, if_version: entry.version }, { method: "DELETE" });
    toast(`Deleted ${entry.key}`);
    closeEditor();
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) showConflict(error.body, entry.version);
    else report(error);
  }
  await refreshAfterWrite();
}

async function clearScope() {
  const scope = view.scope;
  const ok = await confirmDialog(`Remove every key of the scope “${scope}”? This cannot be undone.`, { typed: scope, action: "Clear scope" });
  if (!ok) return;
  try {
    const result = await api("scope", { scope, confirm: scope }, { method: "DELETE" });
    toast(`Cleared ${scope} (${result.count} keys)`);
    closeEditor();
  } catch (error) {
    report(error);
  }
  await refreshAfterWrite();
}

async function refreshAfterWrite() {
  await loadScopes().catch(report);
  if (view.scope !== null) {
    view.cursors = [null];
    await loadItems().catch(report);
  }
}

// -- live events (Server-Sent Events) -----------------------------------------------------------

let refreshTimer = null;
function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    loadScopes().catch(report);
    if (view.scope !== null) loadItems().catch(report);
  }, 150);
}

function addEvent(event) {
  const list = $("events");
  const when = new Date(event.timestamp * 1000);
  const where = event.item_id === null || event.item_id === undefined ? event.group_id : `${event.group_id} / ${event.item_id}`;
  const detail =
    event.event_type === "deleted" || event.event_type === "expired" ? null
      : event.event_type === "cleared" ? `${event.count} keys`
        : preview(event.new_value, 80);
  const item = el(
    "li",
    {
      class: `event ${event.event_type}`,
      dataset: { scope: event.group_id, key: event.item_id ?? "" },
      title: "Open",
      onclick: () => openFromEvent(event),
    },
    el("span", { class: "kind" }, event.event_type),
    el("time", { datetime: when.toISOString() }, when.toLocaleTimeString()),
    el("span", { class: "where", title: where }, where),
    detail === null ? null : el("code", { class: "detail" }, detail),
    event.missed ? el("span", { class: "muted small" }, `(${event.missed} earlier events were skipped)`) : null,
  );
  list.prepend(item);
  while (list.children.length > MAX_FEED) list.lastElementChild.remove();
  $("no-events").hidden = true;
}

async function openFromEvent(event) {
  if (view.scope !== event.group_id) selectScope(event.group_id);
  if (event.item_id === null || event.item_id === undefined) return;
  try {
    openEditor(await api("entry", { scope: event.group_id, key: event.item_id }));
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) toast(`${event.item_id} no longer exists`);
    else report(error);
  }
}

function connectEvents() {
  const status = $("feed-status");
  const source = new EventSource(`${API}events`);
  source.addEventListener("open", () => {
    status.textContent = "live";
    status.dataset.state = "live";
  });
  source.addEventListener("error", () => {
    status.textContent = "reconnecting…";
    status.dataset.state = "down";
  });
  source.addEventListener("hello", (message) => {
    const hello = JSON.parse(message.data);
    const note = $("feed-note");
    note.hidden = hello.durable;
    note.textContent = "Shows the writes made through the console and the changes a state trigger receives.";
  });
  source.addEventListener("state", (message) => {
    const event = JSON.parse(message.data);
    addEvent(event);
    if (event.group_id === view.scope || !document.querySelector(`#scopes [data-scope="${CSS.escape(event.group_id)}"]`)) {
      scheduleRefresh();
    } else {
      loadScopes().catch(report);
    }
  });
}

// -- wiring -------------------------------------------------------------------------------------

function wire() {
  $("refresh-scopes").addEventListener("click", () => loadScopes().catch(report));
  let prefixTimer = null;
  $("prefix").addEventListener("input", () => {
    clearTimeout(prefixTimer);
    prefixTimer = setTimeout(() => {
      view.prefix = $("prefix").value;
      view.cursors = [null];
      loadItems().catch(report);
    }, 200);
  });
  $("next-page").addEventListener("click", () => {
    if (view.next === null) return;
    view.cursors.push(view.next);
    loadItems().catch(report);
  });
  $("prev-page").addEventListener("click", () => {
    if (view.cursors.length > 1) view.cursors.pop();
    loadItems().catch(report);
  });
  $("new-key").addEventListener("click", () => openEditor(null));
  $("clear-scope").addEventListener("click", () => clearScope());
  $("editor-close").addEventListener("click", closeEditor);
  $("editor-value").addEventListener("input", validateEditor);
  $("editor-format").addEventListener("click", () => {
    const parsed = validateEditor();
    if (parsed.ok) setEditorText(JSON.stringify(parsed.value, null, 2));
  });
  $("editor").addEventListener("submit", (event) => {
    event.preventDefault();
    saveEditor(view.entry ? view.entry.version : 0);
  });
  $("editor-delete").addEventListener("click", () => deleteKey());
  $("conflict-load").addEventListener("click", () => {
    if (view.conflict && view.conflict.current) openEditor(view.conflict.current);
  });
  $("conflict-overwrite").addEventListener("click", () => {
    const current = view.conflict && view.conflict.current;
    saveEditor(current ? current.version : 0);
  });
  $("clear-feed").addEventListener("click", () => {
    $("events").replaceChildren();
    $("no-events").hidden = false;
  });
}

async function start() {
  wire();
  connectEvents();
  await Promise.all([loadInfo(), loadScopes(), loadSteps()]).catch(report);
  const match = /^#scope=(.*)$/.exec(location.hash);
  if (match) selectScope(decodeURIComponent(match[1]));
  document.body.dataset.ready = "true";
}

start();
