// Trace page: selecting a span shows its details, read from the JSON API (fetched on
// first need, as are the flame graph and the span filter); collapsing works on the rows.
(function () {
  "use strict";
  const waterfall = document.getElementById("waterfall");
  const detail = document.getElementById("span-detail");
  if (!waterfall || !detail) return;
  const traceId = waterfall.dataset.traceId;
  const flame = document.getElementById("flame");
  const rowOf = new Map(Array.from(waterfall.querySelectorAll(".span-row"), (r) => [r.dataset.spanId, r]));
  let selected = null;
  const flameOf = new Map(); // span id -> its <g> in the flame graph, once drawn
  let flameDrawn = false;
  let loaded = null;
  // the trace's JSON, spans by id; fetched once, when first needed
  function trace() {
    if (!loaded) {
      loaded = fetch("/api/traces/" + traceId)
        .then((r) => r.json())
        .then((t) => {
          t.byId = new Map(t.spans.map((s) => [s.span_id, s]));
          return t;
        });
    }
    return loaded;
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
      " · p50 " + fmt(op.p50_ns) + " · p95 " + fmt(op.p95_ns);
  }

  function critical(span, t) {
    if (!span.critical_ns) return "off the path";
    const share = (100 * span.critical_ns) / (t.critical_path.duration_ns || 1);
    return fmt(span.critical_ns) + " (" + share.toFixed(1) + "% of the root's duration)";
  }

  function show(span, t) {
    const start = t.start_ns;
    const parts = [
      el("h3", { id: "detail-title" }, [span.service + ": " + span.name]),
      table("detail-summary", {
        "span id": span.span_id,
        "parent id": span.parent_id || "(root)",
        kind: span.kind,
        duration: fmt(span.duration_ns),
        "of its kind": kind(span),
        "critical path": critical(span, t),
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


  // One selection, shown in both views and the detail panel.
  function selectSpan(spanId) {
    selected = spanId;
    waterfall.querySelectorAll(".span-row.selected").forEach((r) => r.classList.remove("selected"));
    rowOf.get(spanId)?.classList.add("selected");
    flame.querySelectorAll("rect.selected").forEach((r) => r.classList.remove("selected"));
    flameOf.get(spanId)?.firstChild.classList.add("selected");
    trace().then((t) => {
      const span = t.byId.get(spanId);
      if (span && selected === spanId) show(span, t);
    });
  }

  waterfall.addEventListener("click", (event) => {
    const toggle = event.target.closest(".toggle");
    if (toggle) {
      const row = toggle.closest(".span-row");
      setCollapsed(row, !row.classList.contains("collapsed"));
      applyCollapse();
      return;
    }
    const row = event.target.closest(".span-row");
    if (row) selectSpan(row.dataset.spanId);
  });
  waterfall.addEventListener("keydown", (event) => {
    if (event.key === "Enter") event.target.closest(".span-row")?.click();
  });

  // Collapse: the toggle of a span with children hides the rows below it, in tree
  // order, that are deeper than it.
  const rows = Array.from(rowOf.values());
  const depth = (row) => Number(row.dataset.depth);
  function setCollapsed(row, collapsed) {
    row.classList.toggle("collapsed", collapsed); // the toggle's arrow follows, by CSS
  }
  function applyCollapse() {
    let hideBelow = Infinity;
    rows.forEach((row) => {
      const d = depth(row);
      const away = d > hideBelow;
      row.classList.toggle("collapsed-away", away);
      if (!away) hideBelow = row.classList.contains("collapsed") ? d : Infinity;
    });
  }
  function collapseAll(collapsed) {
    rows.forEach((row) => {
      if (row.querySelector(".toggle")) setCollapsed(row, collapsed && depth(row) > 0);
    });
    applyCollapse();
  }
  document.getElementById("collapse-all")?.addEventListener("click", () => collapseAll(true));
  document.getElementById("expand-all")?.addEventListener("click", () => collapseAll(false));

  // The span filter dims the spans not matching every field given.
  const filter = document.getElementById("span-filter");
  function parseDuration(text) {
    const m = /^\s*([0-9]*\.?[0-9]+)\s*(ns|us|µs|ms|s)?\s*$/.exec(text);
    if (!m) return null;
    const unit = { ns: 1, us: 1e3, "µs": 1e3, ms: 1e6, s: 1e9 }[m[2] || "ms"];
    return parseFloat(m[1]) * unit;
  }
  function matcher() {
    const service = document.getElementById("f-service").value;
    const name = document.getElementById("f-name").value.trim().toLowerCase();
    const attr = document.getElementById("f-attr").value.trim();
    const errors = document.getElementById("f-errors").checked;
    const minText = document.getElementById("f-min").value.trim();
    const min = minText ? parseDuration(minText) : null;
    document.getElementById("f-min").setCustomValidity(minText && min === null ? "a duration: 250ms, 1.5s" : "");
    if (!service && !name && !attr && !errors && min === null) return null;
    const eq = attr.indexOf("=");
    const key = eq < 0 ? attr : attr.slice(0, eq);
    const value = eq < 0 ? null : attr.slice(eq + 1);
    return (s) =>
      (!service || s.service === service) &&
      (!name || s.name.toLowerCase().includes(name)) &&
      (!attr || (key in s.attributes &&
        (value === null || String(s.attributes[key]) === value))) &&
      (!errors || s.status.code === "error") &&
      (min === null || s.duration_ns >= min);
  }
  function applyFilter() {
    trace().then((t) => {
      const match = matcher();
      let shown = 0;
      t.spans.forEach((s) => {
        const dim = match !== null && !match(s);
        if (!dim) shown += 1;
        rowOf.get(s.span_id)?.classList.toggle("dimmed", dim);
        flameOf.get(s.span_id)?.classList.toggle("dimmed", dim);
      });
      document.getElementById("filter-count").textContent =
        match === null ? "" : shown + " of " + t.spans.length + " spans match";
    });
  }
  filter?.addEventListener("input", applyFilter);
  filter?.addEventListener("change", applyFilter);
  filter?.addEventListener("reset", () => setTimeout(applyFilter));
  filter?.addEventListener("submit", (event) => event.preventDefault());

  // The flame graph: a rect per span, x and width in proportion to time, on the row the
  // API gives it (flame_row: spans running in parallel under one parent get a row each).
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, v));
    return node;
  }
  function drawFlame(t) {
    const width = flame.clientWidth - 8 || 800;
    const total = t.duration_ns || 1;
    const height = t.flame_rows * 20;
    const root = svg("svg", { id: "flame-graph", width: width, height: height, viewBox: "0 0 " + width + " " + height });
    const colors = new Map(Array.from(rowOf.values(), (r) => [r.dataset.spanId, r.querySelector(".bar")?.style.backgroundColor]));
    t.spans.forEach((s) => {
      const x = ((s.start_ns - t.start_ns) / total) * width;
      const w = (s.duration_ns / total) * width;
      const g = svg("g", { "data-span-id": s.span_id });
      flameOf.set(s.span_id, g);
      const rect = svg("rect", {
        x: x.toFixed(2), y: s.flame_row * 20, width: Math.max(w, 0.5).toFixed(2), height: 18,
        fill: colors.get(s.span_id) || "#888", "data-span-id": s.span_id, tabindex: 0,
        class: (s.critical_ns ? "critical" : "") + (s.span_id === selected ? " selected" : ""),
      });
      const title = svg("title", {});
      title.textContent = s.service + ": " + s.name + " · " + fmt(s.duration_ns);
      rect.append(title);
      g.append(rect);
      if (w > 40) {
        const text = svg("text", { x: (x + 4).toFixed(2), y: s.flame_row * 20 + 13 });
        text.textContent = s.name.slice(0, Math.floor(w / 7));
        g.append(text);
      }
      root.append(g);
    });
    flame.replaceChildren(root);
    flameDrawn = true;
    applyFilter();
  }
  flame.addEventListener("click", (event) => {
    const rect = event.target.closest("[data-span-id]");
    if (rect) select(rect.dataset.spanId); // its subtree opened in the waterfall too
  });
  flame.addEventListener("keydown", (event) => {
    const rect = event.target.closest("rect[data-span-id]");
    if (rect && event.key === "Enter") select(rect.dataset.spanId);
  });
  function view(name) {
    const flameOn = name === "flame";
    flame.hidden = !flameOn;
    waterfall.hidden = flameOn;
    document.getElementById("view-flame").classList.toggle("active", flameOn);
    document.getElementById("view-waterfall").classList.toggle("active", !flameOn);
    if (flameOn && !flameDrawn) trace().then(drawFlame);
    if (!flameOn && selected) rowOf.get(selected)?.scrollIntoView({ block: "nearest" });
  }
  document.getElementById("view-flame")?.addEventListener("click", () => view("flame"));
  document.getElementById("view-waterfall")?.addEventListener("click", () => view("waterfall"));

  // A log line, or a link ending in #span-<id>, selects its span (its subtree opened).
  function select(spanId) {
    const row = rowOf.get(spanId);
    if (!row) return;
    let d = depth(row);
    for (let above = row.previousElementSibling; above && d > 0; above = above.previousElementSibling) {
      if (above.dataset.depth !== undefined && depth(above) < d) {
        setCollapsed(above, false);
        d = depth(above);
      }
    }
    applyCollapse();
    row.scrollIntoView({ block: "center" });
    selectSpan(spanId);
  }
  document.getElementById("trace-logs")?.addEventListener("click", (event) => {
    const line = event.target.closest("li.log");
    if (line && line.dataset.spanId) select(line.dataset.spanId);
  });
  if (location.hash.startsWith("#span-")) select(location.hash.slice(6));
})();
