// Trace page: selecting a span shows its details, read from the JSON API.
(function () {
  "use strict";
  const waterfall = document.getElementById("waterfall");
  const detail = document.getElementById("span-detail");
  if (!waterfall || !detail) return;
  const traceId = waterfall.dataset.traceId;
  let spans = null;

  function load() {
    if (!spans) {
      spans = fetch("/api/traces/" + traceId)
        .then((r) => r.json())
        .then((t) => new Map(t.spans.map((s) => [s.span_id, s])));
    }
    return spans;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    (children || []).forEach((c) => node.append(c));
    return node;
  }

  function fmt(ns) {
    if (ns < 1e3) return ns.toFixed(0) + "ns";
    if (ns < 1e6) return (ns / 1e3).toPrecision(3) + "µs";
    if (ns < 1e9) return (ns / 1e6).toPrecision(3) + "ms";
    return (ns / 1e9).toPrecision(3) + "s";
  }

  function table(id, obj) {
    const rows = Object.entries(obj || {});
    if (!rows.length) return el("p", { class: "hint" }, ["none"]);
    return el("table", { id: id }, rows.map(([k, v]) =>
      el("tr", {}, [el("td", {}, [k]), el("td", {}, [typeof v === "string" ? v : JSON.stringify(v)])])));
  }

  // The span against the stored spans of its operation (service + name).
  function kind(span) {
    const op = span.operation;
    if (!op || op.p50_ns === null) return "(no stored spans)";
    const faster = span.percentile;
    return "slower than " + faster + "% of " + op.spans + (op.spans === 1 ? " span" : " spans") +
      " · p50 " + fmt(op.p50_ns) + " · p95 " + fmt(op.p95_ns) + (op.sampled ? " (sampled)" : "");
  }

  function show(span) {
    const start = spanStart;
    const parts = [
      el("h3", { id: "detail-title" }, [span.service + ": " + span.name]),
      table("detail-summary", {
        "span id": span.span_id,
        "parent id": span.parent_id || "(root)",
        kind: span.kind,
        duration: fmt(span.duration_ns),
        "of its kind": kind(span),
        "start offset": "+" + fmt(span.start_ns - start),
        status: span.status.code + (span.status.message ? ": " + span.status.message : ""),
        scope: span.scope || "(none)",
      }),
      el("h4", {}, ["Attributes"]),
      table("detail-attributes", span.attributes),
      el("h4", {}, ["Events (" + span.events.length + ")"]),
    ];
    span.events.forEach((e) => {
      parts.push(el("p", { class: "event" }, ["+" + fmt(e.time_ns - span.start_ns) + " " + e.name]));
      parts.push(table("", e.attributes));
    });
    parts.push(el("h4", {}, ["Links (" + span.links.length + ")"]));
    span.links.forEach((l) => {
      parts.push(el("p", {}, [el("a", { href: "/trace/" + l.trace_id }, [l.trace_id + " / " + l.span_id])]));
    });
    parts.push(el("h4", {}, ["Resource"]));
    parts.push(table("detail-resource", span.resource));
    detail.replaceChildren(...parts);
  }

  let spanStart = 0;
  waterfall.addEventListener("click", (event) => {
    const row = event.target.closest(".span-row");
    if (!row) return;
    waterfall.querySelectorAll(".span-row.selected").forEach((r) => r.classList.remove("selected"));
    row.classList.add("selected");
    load().then((byId) => {
      spanStart = Math.min(...Array.from(byId.values(), (s) => s.start_ns));
      const span = byId.get(row.dataset.spanId);
      if (span) show(span);
    });
  });
  waterfall.addEventListener("keydown", (event) => {
    if (event.key === "Enter") event.target.closest(".span-row")?.click();
  });

  // A log line, or a link ending in #span-<id>, selects its span.
  function select(spanId) {
    const row = waterfall.querySelector('.span-row[data-span-id="' + spanId + '"]');
    if (!row) return;
    row.scrollIntoView({ block: "center" });
    row.click();
  }
  document.getElementById("trace-logs")?.addEventListener("click", (event) => {
    const line = event.target.closest("li.log");
    if (line && line.dataset.spanId) select(line.dataset.spanId);
  });
  if (location.hash.startsWith("#span-")) select(location.hash.slice(6));
})();
