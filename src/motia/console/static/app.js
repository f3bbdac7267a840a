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
  // the Streams view
  streams: new Map(), // name -> {name, groups, declared, description, source, schema, history}
  stream: null,     // the stream shown
  groups: [],       // its groups
  group: null,      // the group shown
  groupSeq: -1,     // the group's seq the item list reflects (-1: not read yet)
  items: new Map(), // the group's items shown: id -> {id, version, value}
  truncated: false, // whether the group holds more items than shown
  item: null,       // the id of the item shown in detail
  streamEvents: [], // the latest stream changes received, oldest first (for the list of a stream picked later)
  // the Dead letters view
  dead: false,      // whether it is shown
  deadOpen: null,   // the id of the dead letter whose payload is shown
  deadCursors: [null], // `after` of each page of dead letters seen; the last one is the current page
  deadNext: null,   // `after` of the next page, or null
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
  const stats = await api("stats");
  const mb = (stats.size.total / (1024 * 1024)).toFixed(1);
  $("store-stats").textContent =
    `${stats.keys} keys · ${stats.pending} pending · ${stats.dead_letters} dead letters · ` +
    `${stats.outbox} in outbox · ${stats.streams.changes} stream changes · ${mb} MB`;
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

/** How a queue, state or stream trigger delivers: queue settings, then the retry policy ("" for others). */
function deliveryText(trigger) {
  const parts = [];
  const q = trigger.queue;
  if (q) {
    if (q.type === "fifo") parts.push("fifo");
    if (q.delay_seconds) parts.push(`delay ${q.delay_seconds}s`);
    if (q.visibility_timeout !== null) parts.push(`lease ${q.visibility_timeout}s`);
    if (q.concurrency !== null) parts.push(`${q.concurrency} at a time`);
    if (q.key_concurrency) parts.push(`${q.key_concurrency.limit} at a time per ${q.key_concurrency.key}`);
    if (q.rate_limit) {
      const per = q.rate_limit.key ? ` per ${q.rate_limit.key}` : "";
      parts.push(`${q.rate_limit.limit} per ${q.rate_limit.period}s${per}`);
    }
  }
  const r = trigger.retry;
  if (r) {
    const backoff = r.backoff_type === "fixed" ? `${r.backoff}s apart` : `backoff ${r.backoff}s doubling to ${r.backoff_max}s`;
    parts.push(r.max_retries ? `${r.max_retries} retries, ${backoff}` : "no retries");
  }
  return parts.join(" · ");
}

function triggerItem(trigger) {
  const delivery = deliveryText(trigger);
  const item = el("span", { class: `trigger ${trigger.type}`, title: delivery }, triggerText(trigger));
  if (delivery) item.append(el("span", { class: "delivery" }, delivery));
  return item;
}

async function loadSteps() {
  const { steps } = await api("steps");
  $("steps").replaceChildren(
    ...steps.map((step) =>
      el(
        "li",
        { class: "step", title: step.description || "" },
        el("span", { class: "name" }, step.name),
        el("span", { class: "triggers" }, ...step.triggers.map(triggerItem)),
      ),
    ),
  );
  $("no-steps").hidden = steps.length > 0;
}

// -- keys of a scope ----------------------------------------------------------------------------

function showBrowser(which) {
  $("empty-browser").hidden = which !== null;
  $("scope-view").hidden = which !== "scope";
  $("stream-view").hidden = which !== "stream";
  $("dead-view").hidden = which !== "dead";
  $("traces-view").hidden = which !== "traces";
  $("trace-view").hidden = which !== "trace";
  view.dead = which === "dead";
  $("open-dead").classList.toggle("active", view.dead);
  $("open-traces").classList.toggle("active", which === "traces" || which === "trace");
  if (which !== "traces" && which !== "trace") leaveTraces();  // traces.js
}

/** Leave the scope, stream or dead letters shown, for a view of traces.js. */
function leaveForTraces() {
  leaveStream();
  if (view.scope !== null) {
    view.scope = null;
    closeEditor();
    for (const button of document.querySelectorAll("#scopes .scope")) button.classList.remove("active");
  }
  view.dead = false;
}

function selectScope(scope) {
  leaveStream();
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
  const scope = view.scope;
  const after = view.cursors[view.cursors.length - 1];
  const page = await api("items", { scope, prefix: view.prefix, after, limit: PAGE });
  if (view.scope !== scope) return;  // another scope or a stream was picked meanwhile
  view.next = page.next;
  showBrowser("scope");
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

// -- streams ------------------------------------------------------------------------------------
// The page reads a group's items with the group's seq, then applies the live changes that follow that
// seq one by one; a change it cannot place (a gap, an item too big to travel in the feed) re-reads.

const MAX_STREAM_EVENTS = 200;

function streamMeta(stream) {
  if (!stream) return "";
  if (!stream.declared) return "not declared by this app: its stored items only";
  const parts = [];
  if (stream.description) parts.push(stream.description);
  parts.push(stream.schema ? `schema ${stream.schema}` : "no schema");
  if (stream.source) parts.push(stream.source.split("/").pop());
  parts.push(`history ${stream.history}`);
  return parts.join(" · ");
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}

async function loadStreams() {
  const { streams } = await api("streams");
  view.streams = new Map(streams.map((stream) => [stream.name, stream]));
  $("streams").replaceChildren(
    ...streams.map((stream) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            class: stream.name === view.stream ? "scope active" : "scope",
            dataset: { stream: stream.name },
            title: streamMeta(stream),
            onclick: () => selectStream(stream.name).catch(report),
          },
          el("span", { class: "name" }, stream.name),
          el("span", { class: "badge", title: "groups holding items" }, stream.groups),
        ),
      ),
    ),
  );
  $("no-streams").hidden = streams.length > 0;
  if (view.stream !== null) showStreamMeta();
}

function showStreamMeta() {
  const stream = view.streams.get(view.stream);
  $("stream-meta").textContent = streamMeta(stream);
  $("stream-meta").title = (stream && stream.source) || "";
}

function leaveStream() {
  view.stream = null;
  view.group = null;
  view.item = null;
  $("stream-view").hidden = true;
  for (const button of document.querySelectorAll("#streams .scope")) button.classList.remove("active");
}

function streamHash() {
  const parts = [`stream=${encodeURIComponent(view.stream)}`];
  if (view.group !== null) parts.push(`group=${encodeURIComponent(view.group)}`);
  history.replaceState(null, "", `#${parts.join("&")}`);
}

async function selectStream(name, group = null) {
  if (view.scope !== null) {
    view.scope = null;
    closeEditor();
    for (const button of document.querySelectorAll("#scopes .scope")) button.classList.remove("active");
  }
  const changed = view.stream !== name;
  view.stream = name;
  view.group = null;
  view.item = null;
  for (const button of document.querySelectorAll("#streams .scope")) {
    button.classList.toggle("active", button.dataset.stream === name);
  }
  $("stream-title").textContent = name;
  showStreamMeta();
  $("group-view").hidden = true;
  if (changed) {
    $("stream-changes").replaceChildren();
    $("no-stream-changes").hidden = false;
    for (const event of view.streamEvents) if (event.stream === name) addStreamChange(event);
  }
  showBrowser("stream");
  streamHash();
  await loadGroups();
  if (group !== null && view.stream === name) await selectGroup(group);
}

async function loadGroups() {
  const name = view.stream;
  if (name === null) return;
  const answer = await api("streams/groups", { stream: name });
  if (view.stream !== name) return;
  view.groups = answer.groups;
  const shown = [...answer.groups];
  if (view.group !== null && !shown.includes(view.group)) shown.push(view.group);  // emptied meanwhile
  $("stream-groups").replaceChildren(
    ...shown.map((group) =>
      el(
        "button",
        {
          class: group === view.group ? "chip active" : "chip",
          dataset: { group },
          onclick: () => selectGroup(group).catch(report),
        },
        group,
      ),
    ),
  );
  $("no-groups").hidden = answer.groups.length > 0;
  $("stream-group-count").textContent = plural(answer.groups.length, "group");
}

async function selectGroup(group) {
  view.group = group;
  view.groupSeq = -1;
  view.items = new Map();
  view.item = null;
  for (const chip of document.querySelectorAll("#stream-groups .chip")) {
    chip.classList.toggle("active", chip.dataset.group === group);
  }
  $("group-title").textContent = group;
  $("group-view").hidden = false;
  $("stream-item").hidden = true;
  $("stream-items").replaceChildren();
  streamHash();
  await loadStreamItems();
}

async function loadStreamItems() {
  const { stream, group } = view;
  if (stream === null || group === null) return;
  const page = await api("streams/items", { stream, group });
  if (view.stream !== stream || view.group !== group) return;
  if (page.seq < view.groupSeq) return loadStreamItems();  // older than a change already shown: read again
  view.groupSeq = page.seq;
  view.items = new Map(page.items.map((item) => [item.id, item]));
  view.truncated = page.truncated;
  $("items-truncated").hidden = !page.truncated;
  $("items-truncated").textContent = `The first ${page.items.length} of ${page.count} items.`;
  renderItems(null, page.count);
}

function renderItems(changed, count = view.items.size) {
  const ids = [...view.items.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  $("stream-items").replaceChildren(
    ...ids.map((id) => {
      const item = view.items.get(id);
      const classes = [id === view.item ? "selected" : "", id === changed ? "flash" : ""].filter(Boolean).join(" ");
      return el(
        "tr",
        {
          class: classes,
          dataset: { item: id },
          tabindex: "0",
          onclick: () => showItem(id),
          onkeydown: (event) => { if (event.key === "Enter") showItem(id); },
        },
        el("td", { class: "key" }, id),
        el("td", { class: "value" }, el("code", {}, preview(item.value))),
        el("td", { class: "num" }, item.version),
      );
    }),
  );
  $("no-items").hidden = ids.length > 0;
  $("group-count").textContent = plural(count, "item");
  $("group-seq").textContent = `seq ${view.groupSeq}`;
  if (view.item !== null) showItem(view.item);
}

function showItem(id) {
  view.item = id;
  const item = view.items.get(id);
  const detail = $("stream-item");
  detail.hidden = false;
  detail.textContent = item ? JSON.stringify(item.value, null, 2) : `${id} was deleted`;
  for (const row of document.querySelectorAll("#stream-items tr")) row.classList.toggle("selected", row.dataset.item === id);
}

/** Apply a live change of the group shown, or read the group again when it cannot be placed. */
function applyToGroup(event) {
  if (event.seq <= view.groupSeq) return;  // already in what was read
  if (view.groupSeq < 0 || event.seq !== view.groupSeq + 1 || event.data_omitted || view.truncated) {
    scheduleStreamRefresh();
    return;
  }
  view.groupSeq = event.seq;
  if (event.event_type === "create" || event.event_type === "update") {
    const old = view.items.get(event.item_id);
    view.items.set(event.item_id, { id: event.item_id, version: old ? old.version + 1 : 1, value: event.data });
  } else if (event.event_type === "delete") {
    view.items.delete(event.item_id);
  }
  renderItems(event.item_id);
}

/** ``fn`` called once, 150 ms after the last of a burst of calls. */
function debounced(fn) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(() => fn().catch(report), 150);
  };
}

const scheduleStreamsList = debounced(loadStreams);
const scheduleGroups = debounced(loadGroups);
const scheduleStreamRefresh = debounced(async () => {
  scheduleStreamsList();
  await loadGroups();
  await loadStreamItems();
});

function streamEventNode(event, withStream) {
  const when = new Date(event.timestamp * 1000);
  const where = event.item_id === null || event.item_id === undefined ? event.group_id : `${event.group_id} / ${event.item_id}`;
  let detail = null;
  if (event.data_omitted) detail = `(${event.data_omitted} bytes)`;
  else if (event.event_type === "event" && event.data) detail = `${event.data.type} ${preview(event.data.data, 60)}`;
  else if (event.event_type !== "delete") detail = preview(event.data, 80);
  return el(
    "li",
    {
      class: `event stream change-${event.event_type}`,
      dataset: { stream: event.stream, group: event.group_id, item: event.item_id ?? "", seq: event.seq },
      title: `seq ${event.seq} of ${event.stream} / ${event.group_id}: open`,
      onclick: () => openStreamEvent(event).catch(report),
    },
    el("span", { class: "kind" }, event.event_type),
    el("time", { datetime: when.toISOString() }, when.toLocaleTimeString()),
    el("span", { class: "where", title: where }, withStream ? el("span", { class: "stream-name" }, `${event.stream} · `) : null, where),
    detail === null ? null : el("code", { class: "detail" }, detail),
    event.missed ? el("span", { class: "muted small" }, `(${event.missed} earlier events were skipped)`) : null,
  );
}

function addStreamChange(event) {
  const list = $("stream-changes");
  list.prepend(streamEventNode(event, false));
  while (list.children.length > MAX_STREAM_EVENTS) list.lastElementChild.remove();
  $("no-stream-changes").hidden = true;
}

async function openStreamEvent(event) {
  if (view.stream !== event.stream || view.group !== event.group_id) await selectStream(event.stream, event.group_id);
  if (event.item_id !== null && event.item_id !== undefined) showItem(event.item_id);
}

function onStreamEvent(event) {
  view.streamEvents.push(event);
  if (view.streamEvents.length > MAX_STREAM_EVENTS) view.streamEvents.shift();
  prependFeed(streamEventNode(event, true));
  if (event.stream === view.stream) {
    addStreamChange(event);
    if (event.group_id === view.group) applyToGroup(event);
    if (!view.groups.includes(event.group_id) || event.event_type === "delete") scheduleGroups();
  }
  if (!view.streams.has(event.stream) || event.event_type === "create" || event.event_type === "delete") {
    scheduleStreamsList();
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
    event.trace_id ? el("span", { class: "small", onclick: (e) => e.stopPropagation() }, "trace ", traceLink(event.trace_id)) : null,
  );
  prependFeed(item);
}

function prependFeed(node) {
  const list = $("events");
  list.prepend(node);
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
  let opened = false;
  source.addEventListener("open", () => {
    status.textContent = "live";
    status.dataset.state = "live";
    // After a reconnect the stream shown may have changed meanwhile (a restarted server replays nothing)
    if (opened && view.stream !== null) scheduleStreamRefresh();
    opened = true;
  });
  source.addEventListener("error", () => {
    status.textContent = "reconnecting…";
    status.dataset.state = "down";
  });
  source.addEventListener("hello", (message) => {
    const hello = JSON.parse(message.data);
    const note = $("feed-note");
    note.hidden = hello.durable;
    note.textContent =
      "State: shows the writes made through the console and the changes a state trigger receives. Streams: every change.";
  });
  source.addEventListener("stream", (message) => onStreamEvent(JSON.parse(message.data)));
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

// -- dead letters: list, inspect, redrive, purge ---------------------------------------------------

function shorten(text, limit = 120) {
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

function selectDeadLetters() {
  leaveStream();
  if (view.scope !== null) {
    view.scope = null;
    closeEditor();
    for (const button of document.querySelectorAll("#scopes .scope")) button.classList.remove("active");
  }
  history.replaceState(null, "", "#dead-letters");
  showBrowser("dead");
  return loadDeadLetters();
}

function deadFilters() {
  return { step: $("dead-step").value, topic: $("dead-topic").value, kind: $("dead-kind").value };
}

function isoTime(seconds) {
  return new Date(seconds * 1000).toISOString();
}

async function loadDeadLetters() {
  const filters = deadFilters();
  const after = view.deadCursors[view.deadCursors.length - 1];
  const answer = await api("dead-letters", { ...filters, after });
  const unfiltered = !filters.step && !filters.topic && !filters.kind;
  if (unfiltered && after === null) $("dead-count").textContent = answer.dead_letters.length + (answer.next ? "+" : "");
  if (!view.dead) return;
  const current = deadFilters();
  if (current.step !== filters.step || current.topic !== filters.topic || current.kind !== filters.kind) return;
  const letters = answer.dead_letters;
  view.deadNext = answer.next;
  $("dead-next").hidden = answer.next === null;
  $("dead-first").hidden = view.deadCursors.length === 1;
  $("dead-total").textContent = plural(letters.length, "dead letter") + (answer.next ? "+" : "");
  $("dead-pending").replaceChildren(
    ...Object.entries(answer.pending).map(([step, count]) =>
      el("span", { class: "chip", title: "deliveries waiting or running" }, `${step}: ${count} pending`),
    ),
  );
  const rows = [];
  for (const letter of letters) {
    const open = letter.id === view.deadOpen;
    const stop = (handler) => (event) => { event.stopPropagation(); handler().catch(report); };
    rows.push(
      el(
        "tr",
        {
          class: open ? "selected" : "",
          dataset: { id: letter.id },
          tabindex: "0",
          title: "Show the payload and errors",
          onclick: () => {
            view.deadOpen = open ? null : letter.id;
            loadDeadLetters().catch(report);
          },
        },
        el("td", { class: "key" }, letter.step),
        el("td", {}, letter.kind),
        el("td", {}, letter.topic === null ? "" : letter.topic),
        el("td", { class: "value", title: letter.error }, el("code", {}, shorten(letter.error_summary || ""))),
        el("td", { class: "num" }, String(letter.attempts)),
        el("td", { title: isoTime(letter.failed_at) }, relativeTime(letter.failed_at - Date.now() / 1000)),
        el(
          "td",
          { class: "actions" },
          el("button", { class: "small", dataset: { testid: "redrive" }, title: "Deliver it again", onclick: stop(() => redriveLetters([letter.id])) }, "Redrive"),
          el("button", { class: "small danger", dataset: { testid: "purge" }, title: "Delete it for good", onclick: stop(() => purgeLetter(letter)) }, "Purge"),
        ),
      ),
    );
    if (open) {
      const facts = [`id ${letter.id}`, `created ${isoTime(letter.created_at)}`, `failed ${isoTime(letter.failed_at)}`];
      const errors = [el("div", { class: "muted small" }, "last error"), el("pre", { class: "item-detail error-text", dataset: { testid: "dead-error" } }, letter.error)];
      if (letter.first_error !== null && letter.first_error !== letter.error) {
        errors.push(el("div", { class: "muted small" }, "first error"), el("pre", { class: "item-detail error-text", dataset: { testid: "dead-first-error" } }, letter.first_error));
      }
      rows.push(
        el(
          "tr",
          { class: "dead-detail", dataset: { detail: letter.id } },
          el(
            "td",
            { colspan: "7" },
            el(
              "div",
              { class: "muted small", dataset: { testid: "dead-facts" } },
              facts.join(" · "),
              typeof letter.trace_id === "string"
                ? el("span", { dataset: { testid: "dead-trace" } }, " · trace ", traceLink(letter.trace_id))
                : null,
            ),
            el("pre", { class: "item-detail", dataset: { testid: "dead-payload" } }, JSON.stringify(letter.payload, null, 2)),
            ...errors,
          ),
        ),
      );
    }
  }
  $("dead-letters").replaceChildren(...rows);
  $("no-dead").hidden = letters.length > 0;
  if (!$("pending-table").hidden) await loadPending();
}

async function redriveLetters(ids) {
  const answer = await api("dead-letters/redrive", {}, postJson({ ids }));
  toast(answer.skipped.length ? `Redrove ${answer.redriven}; skipped ${answer.skipped.join(", ")} (pending again)` : `Redrove ${plural(answer.redriven, "dead letter")}`);
  await loadDeadLetters();
}

async function purgeLetter(letter) {
  const ok = await confirmDialog(`Delete the dead letter ${letter.id} of “${letter.step}” for good?`, { action: "Purge" });
  if (!ok) return;
  const answer = await api("dead-letters/purge", {}, postJson({ ids: [letter.id] }));
  toast(`Purged ${plural(answer.purged, "dead letter")}`);
  await loadDeadLetters();
}

function postJson(body) {
  return { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
}

function describeFilters(filters) {
  const parts = Object.entries(filters).filter(([, value]) => value).map(([name, value]) => `${name} “${value}”`);
  return parts.length ? `every dead letter of ${parts.join(", ")}` : "every dead letter";
}

async function actOnMatching(verb) {
  const filters = deadFilters();
  const unfiltered = !filters.step && !filters.topic && !filters.kind;
  const purge = verb === "purge";
  const message = `${purge ? "Delete" : "Redrive"} ${describeFilters(filters)}${purge ? " for good" : ""}?`;
  // Everything at once, for good: the operator types the word, as for clearing a scope.
  const ok = await confirmDialog(message, { action: purge ? "Purge all" : "Redrive all", typed: purge && unfiltered ? "purge" : null });
  if (!ok) return;
  const body = unfiltered ? { all: true } : Object.fromEntries(Object.entries(filters).filter(([, value]) => value));
  const answer = await api(`dead-letters/${verb}`, {}, postJson(body));
  toast(purge ? `Purged ${plural(answer.purged, "dead letter")}` : `Redrove ${plural(answer.redriven, "dead letter")}`);
  view.deadCursors = [null];
  await loadDeadLetters();
}

async function loadPending() {
  const answer = await api("pending-deliveries", deadFilters());
  $("pending-table").hidden = false;
  $("load-pending").textContent = "Refresh";
  $("pending-deliveries").replaceChildren(
    ...answer.pending_deliveries.map((item) =>
      el(
        "tr",
        { dataset: { id: item.id }, title: `id ${item.id}` },
        el("td", { class: "key" }, item.step),
        el("td", {}, item.kind),
        el("td", {}, item.topic === null ? "" : item.topic),
        el("td", { class: "num" }, String(item.attempts)),
        el("td", { title: isoTime(item.available_at) }, item.leased_until !== null ? "running" : relativeTime(item.available_at - Date.now() / 1000)),
        el("td", { class: "value", title: item.last_error || "" }, el("code", {}, shorten(item.error_summary || ""))),
      ),
    ),
  );
}

// -- wiring -------------------------------------------------------------------------------------

function wire() {
  $("refresh-scopes").addEventListener("click", () => loadScopes().catch(report));
  $("refresh-streams").addEventListener("click", () => loadStreams().catch(report));
  $("clear-stream-changes").addEventListener("click", () => {
    $("stream-changes").replaceChildren();
    $("no-stream-changes").hidden = false;
  });
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
  $("open-dead").addEventListener("click", () => selectDeadLetters().catch(report));
  $("refresh-dead").addEventListener("click", () => loadDeadLetters().catch(report));
  let deadTimer = null;
  for (const id of ["dead-step", "dead-topic", "dead-kind"]) {
    $(id).addEventListener("input", () => {
      clearTimeout(deadTimer);
      view.deadCursors = [null];
      deadTimer = setTimeout(() => loadDeadLetters().catch(report), 200);
    });
  }
  $("dead-next").addEventListener("click", () => {
    if (view.deadNext === null) return;
    view.deadCursors.push(view.deadNext);
    loadDeadLetters().catch(report);
  });
  $("dead-first").addEventListener("click", () => {
    view.deadCursors = [null];
    loadDeadLetters().catch(report);
  });
  $("redrive-matching").addEventListener("click", () => actOnMatching("redrive").catch(report));
  $("purge-matching").addEventListener("click", () => actOnMatching("purge").catch(report));
  $("load-pending").addEventListener("click", () => loadPending().catch(report));
  wireTraces();  // traces.js
  $("clear-feed").addEventListener("click", () => {
    $("events").replaceChildren();
    $("no-events").hidden = false;
  });
}

async function start() {
  wire();
  connectEvents();
  await Promise.all([loadInfo(), loadScopes(), loadStreams(), loadSteps(), loadDeadLetters(), loadTraces()]).catch(report);
  if (location.hash === "#dead-letters") await selectDeadLetters().catch(report);
  await routeTraces(location.hash).catch(report);  // #traces, #trace=<id>
  const match = /^#scope=(.*)$/.exec(location.hash);
  if (match) selectScope(decodeURIComponent(match[1]));
  const streamMatch = /^#stream=([^&]*)(?:&group=(.*))?$/.exec(location.hash);
  if (streamMatch) {
    const group = streamMatch[2] === undefined ? null : decodeURIComponent(streamMatch[2]);
    await selectStream(decodeURIComponent(streamMatch[1]), group).catch(report);
  }
  document.body.dataset.ready = "true";
}

start();
