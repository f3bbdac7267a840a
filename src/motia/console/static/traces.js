// pymotia console: the Traces view (the recent traces of this process, one trace as a tree of spans).
// Loaded before app.js; it uses app.js's helpers ($, el, api, report, ...) only once the page has started.
// Every span name, attribute and log line is put on the page with textContent, never as HTML.
"use strict";

const TRACES_REFRESH_MS = 3000;

const traces = {
  list: false,     // whether the list is shown
  shown: null,     // the trace id shown in detail, or null
  timer: null,     // refreshes the list while it is shown
};

/** A link to a trace: its address opens it from anywhere (a log line, an error response); here it opens in place. */
function traceLink(traceId, text = traceId) {
  return el(
    "a",
    {
      class: "trace-link",
      href: `/__motia/traces/${encodeURIComponent(traceId)}`,
      title: "Open this trace",
      dataset: { trace: traceId },
      onclick: (event) => {
        if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;  // new tab: the address
        event.preventDefault();
        openTrace(traceId).catch(report);
      },
    },
    text,
  );
}

function formatMs(ms) {
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

function leaveTraces() {
  traces.list = false;
  traces.shown = null;
  clearInterval(traces.timer);
  traces.timer = null;
}

async function selectTraces() {
  leaveForTraces();
  traces.list = true;
  history.replaceState(null, "", "#traces");
  showBrowser("traces");
  clearInterval(traces.timer);
  traces.timer = setInterval(() => { if (!document.hidden) loadTraces().catch(report); }, TRACES_REFRESH_MS);
  await loadTraces();
}

async function loadTraces() {
  const answer = await api("traces");
  $("traces-count").textContent = answer.enabled ? answer.traces.length : "off";
  if (!traces.list) return;
  $("traces-off").hidden = answer.enabled;
  $("traces-off").textContent = answer.enabled ? "" : answer.hint;
  $("traces-table").hidden = !answer.enabled;
  $("traces-kept").textContent = answer.enabled
    ? `The last ${answer.kept.max_traces} traces of this process (up to ${answer.kept.max_spans} spans each, ` +
      `${answer.kept.max_total_spans} in all), newest first.`
    : "";
  $("traces-total").textContent = answer.enabled ? plural(answer.traces.length, "trace") : "";
  $("no-traces").hidden = !answer.enabled || answer.traces.length > 0;
  $("traces").replaceChildren(
    ...answer.traces.map((trace) =>
      el(
        "tr",
        {
          class: trace.error ? "error-row" : "",
          dataset: { trace: trace.trace_id },
          tabindex: "0",
          title: "Open this trace",
          onclick: () => openTrace(trace.trace_id).catch(report),
          onkeydown: (event) => { if (event.key === "Enter") openTrace(trace.trace_id).catch(report); },
        },
        el("td", { class: "key" }, trace.root, trace.error ? el("span", { class: "badge error-badge" }, "error") : null),
        el("td", { title: new Date(trace.start * 1000).toISOString() }, relativeTime(trace.start - Date.now() / 1000)),
        el("td", { class: "num" }, formatMs(trace.duration_ms)),
        el("td", { class: "num" }, String(trace.span_count) + (trace.dropped ? ` (+${trace.dropped} dropped)` : "")),
        el("td", {}, el("code", { class: "muted" }, trace.trace_id)),
      ),
    ),
  );
}

async function openTrace(traceId) {
  leaveForTraces();
  leaveTraces();
  traces.shown = traceId;
  history.replaceState(null, "", `#trace=${encodeURIComponent(traceId)}`);
  showBrowser("trace");
  $("trace-title").textContent = "Trace";
  $("trace-meta").replaceChildren(el("code", {}, traceId));
  $("trace-spans").replaceChildren();
  $("trace-error").hidden = true;
  let trace;
  try {
    trace = await api(`traces/${encodeURIComponent(traceId)}`);
  } catch (error) {
    if (!(error instanceof ApiError) || traces.shown !== traceId) throw error;
    $("trace-error").textContent = error.message;
    $("trace-error").hidden = false;
    return;
  }
  if (traces.shown !== traceId) return;
  renderTrace(trace);
}

/** What a span is about, in a few words: the trigger of a step, the key of a state operation, a topic. */
function spanDetail(span) {
  const a = span.attributes;
  const parts = [];
  if (span.category === "step") {
    if (a["motia.trigger"]) parts.push(a["motia.trigger"]);
    if (a["http.request.method"] || a["http.route"]) parts.push([a["http.request.method"], a["http.route"]].filter(Boolean).join(" "));
    if (a["messaging.destination.name"]) parts.push(`topic ${a["messaging.destination.name"]}`);
    if (a["motia.cron"]) parts.push(`cron ${a["motia.cron"]}`);
    if (a["motia.state.scope"]) parts.push([a["motia.state.scope"], a["motia.state.key"]].filter((x) => x !== undefined).join(" / "));
    if (a["motia.stream"]) parts.push(`stream ${[a["motia.stream"], a["motia.stream.group"]].filter(Boolean).join(" / ")}`);
    if (a["motia.delivery.attempt"] !== undefined && a["motia.delivery.attempt"] > 1) parts.push(`attempt ${a["motia.delivery.attempt"]}`);
  } else if (span.category === "state") {
    parts.push([a["motia.state.scope"], a["motia.state.key"]].filter((x) => x !== undefined).join(" / "));
  } else if (span.category === "stream") {
    parts.push([a["motia.stream"], a["motia.stream.group"], a["motia.stream.item"]].filter((x) => x !== undefined).join(" / "));
  } else if (span.category === "http") {
    parts.push([a["http.request.method"], a["http.route"] || a["url.path"]].filter(Boolean).join(" "));
  }
  if (a["http.response.status_code"] !== undefined) parts.push(`→ ${a["http.response.status_code"]}`);
  return parts.filter(Boolean).join(" · ");
}

function eventNode(event) {
  const a = event.attributes;
  if (event.name === "log") {
    const severity = String(a["log.severity"] || "info").toLowerCase();
    return el(
      "li",
      { class: `span-event log level-${severity}`, dataset: { event: "log" } },
      el("span", { class: "offset" }, `+${formatMs(event.offset_ms)}`),
      el("span", { class: "severity" }, severity),
      el("span", { class: "message" }, String(a["log.message"] ?? "")),
    );
  }
  if (event.name === "exception") {
    const title = `${a["exception.type"] || "exception"}: ${a["exception.message"] ?? ""}`;
    const node = el(
      "li",
      { class: "span-event exception", dataset: { event: "exception" } },
      el("span", { class: "offset" }, `+${formatMs(event.offset_ms)}`),
      el("span", { class: "severity" }, "exception"),
      el("span", { class: "message" }, title),
    );
    if (a["exception.stacktrace"]) {
      node.append(el("details", {}, el("summary", {}, "stack trace"), el("pre", { class: "item-detail error-text" }, a["exception.stacktrace"])));
    }
    return node;
  }
  return el(
    "li",
    { class: "span-event", dataset: { event: event.name } },
    el("span", { class: "offset" }, `+${formatMs(event.offset_ms)}`),
    el("span", { class: "severity" }, event.name),
    el("span", { class: "message" }, Object.keys(a).length ? JSON.stringify(a) : ""),
  );
}

function attributesTable(span) {
  const rows = Object.entries(span.attributes).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0));
  rows.unshift(["span id", span.span_id], ["kind", span.kind]);
  if (span.parent_id) rows.push(["parent span id", span.parent_id + (span.orphan ? " (not in this process)" : "")]);
  if (span.status_message) rows.push(["status", `${span.status}: ${span.status_message}`]);
  return el(
    "table",
    { class: "attributes", hidden: "" },
    el("tbody", {}, ...rows.map(([name, value]) => el("tr", {}, el("th", {}, name), el("td", {}, typeof value === "string" ? value : JSON.stringify(value))))),
  );
}

function renderTrace(trace) {
  $("trace-title").replaceChildren(trace.root, trace.error ? el("span", { class: "badge error-badge" }, "error") : null);
  const started = new Date(trace.start * 1000);
  $("trace-meta").replaceChildren(
    el("code", {}, trace.trace_id),
    ` · started ${started.toLocaleTimeString()} · ${formatMs(trace.duration_ms)} · ${plural(trace.span_count, "span")}`,
    trace.dropped ? ` (${trace.dropped} more dropped: the per-trace limit)` : "",
  );
  const total = Math.max(trace.duration_ms, 0.001);
  $("trace-spans").replaceChildren(
    ...trace.spans.map((span) => {
      const attributes = attributesTable(span);
      const left = (100 * span.offset_ms) / total;
      const width = Math.max((100 * span.duration_ms) / total, 0.4);
      return el(
        "li",
        {
          class: `span cat-${span.category}${span.error ? " failed" : ""}${span.orphan ? " orphan" : ""}`,
          dataset: { span: span.span_id, depth: span.depth, category: span.category },
          style: `--depth: ${span.depth}`,
        },
        el(
          "div",
          {
            class: "span-head",
            tabindex: "0",
            title: "Show the attributes",
            onclick: () => { attributes.hidden = !attributes.hidden; },
            onkeydown: (event) => { if (event.key === "Enter") attributes.hidden = !attributes.hidden; },
          },
          el(
            "span",
            { class: "span-label" },
            el("span", { class: "span-name" }, span.name),
            span.error ? el("span", { class: "badge error-badge" }, "error") : null,
            el("span", { class: "span-detail muted" }, spanDetail(span)),
          ),
          el("span", { class: "span-bar" }, el("span", { class: "bar", style: `left: ${Math.min(left, 99.6)}%; width: ${Math.min(width, 100 - Math.min(left, 99.6))}%` })),
          el("span", { class: "span-time num", title: `starts at +${formatMs(span.offset_ms)}` }, formatMs(span.duration_ms)),
        ),
        span.events.length ? el("ol", { class: "span-events" }, ...span.events.map(eventNode)) : null,
        attributes,
      );
    }),
  );
}

function wireTraces() {
  $("open-traces").addEventListener("click", () => selectTraces().catch(report));
  $("refresh-traces").addEventListener("click", () => (traces.list ? loadTraces() : selectTraces()).catch(report));
  $("trace-back").addEventListener("click", () => selectTraces().catch(report));
  $("trace-open").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("trace-id").value.trim();
    if (id) openTrace(id).catch(report);
  });
}

/** Route ``#traces`` and ``#trace=<id>``; whether the address named a Traces view. */
async function routeTraces(hash) {
  if (hash === "#traces") {
    await selectTraces();
    return true;
  }
  const match = /^#trace=(.+)$/.exec(hash);
  if (!match) return false;
  await openTrace(decodeURIComponent(match[1]));
  return true;
}
