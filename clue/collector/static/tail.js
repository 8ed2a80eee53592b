// Live tail pages: rows arrive as server-sent events; Pause stops adding them (and
// counts what arrives meanwhile), Resume adds what was held.
(function () {
  "use strict";
  const table = document.getElementById("tail");
  if (!table) return;
  const body = table.tBodies[0];
  const button = document.getElementById("pause");
  const status = document.getElementById("tail-status");
  const fresh = document.getElementById("tail-new");
  const skippedNote = document.getElementById("tail-skipped");
  const colors = JSON.parse(table.dataset.colors || "{}");
  const MAX_ROWS = 500; // shown, and held while paused: the page's memory stays bounded
  let paused = false;
  let held = [];
  let missed = 0;
  let skipped = 0;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    (children || []).forEach((c) => node.append(c));
    return node;
  }
  const chip = (service) =>
    el("span", { class: "chip", style: "background:" + (colors[service] || "#495057") });
  const pad = (n, width) => String(n).padStart(width || 2, "0");
  function clock(ns) {
    const d = new Date(ns / 1e6);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." +
      pad(d.getMilliseconds(), 3);
  }
  function fmt(ns) {
    if (ns < 1e3) return ns.toFixed(0) + "ns";
    if (ns < 1e6) return (ns / 1e3).toPrecision(3) + "µs";
    if (ns < 1e9) return (ns / 1e6).toPrecision(3) + "ms";
    return (ns / 1e9).toPrecision(3) + "s";
  }

  function logRow(l) {
    const level = l.severity ? Math.floor((l.severity - 1) / 4) : 2;
    const message = [l.body];
    Object.entries(l.attributes).forEach(([k, v]) =>
      message.push(" ", el("span", { class: "kv" }, [k + "=" + (typeof v === "string" ? v : JSON.stringify(v))])));
    const link = l.trace_id
      ? [el("a", { class: "trace-link", href: "/trace/" + l.trace_id + (l.span_id ? "#span-" + l.span_id : "") },
        [l.trace_id.slice(0, 12) + "…"])]
      : [];
    return el("tr", { class: "log sev-" + level }, [
      el("td", { class: "nowrap" }, [clock(l.time_ns)]),
      el("td", { class: "sev" }, [l.severity_text]),
      el("td", {}, [chip(l.service), l.service]),
      el("td", { class: "body" }, message),
      el("td", {}, link),
    ]);
  }

  function traceRow(t) {
    const first = [el("a", { class: "trace-link", href: "/trace/" + t.trace_id },
      [chip(t.root.service), t.root.service + ": ", el("b", {}, [t.root.name])])];
    if (t.receiving) {
      first.push(" ", el("span", { class: "receiving", title: "a parent span has not arrived yet" }, ["receiving…"]));
    }
    if (t.error_count) first.push(" ", el("span", { class: "error-mark" }, ["✖ " + t.error_count]));
    first.push(el("div", { class: "trace-id" }, [t.trace_id]));
    const services = t.services.map((s) =>
      el("span", { class: "tag", style: "border-color:" + (colors[s.name] || "#495057") }, [s.name + " (" + s.spans + ")"]));
    return el("tr", { class: "trace-row" + (t.error_count ? " has-error" : ""), "data-trace-id": t.trace_id }, [
      el("td", {}, first),
      el("td", {}, services),
      el("td", { class: "num" }, [String(t.span_count)]),
      el("td", { class: "num" }, [fmt(t.duration_ns)]),
      el("td", {}, [clock(t.start_ns)]),
    ]);
  }

  const event = table.dataset.event;
  function add(item) {
    if (event === "trace") {
      // a trace comes again when more of its spans arrive: its row moves to the top
      body.querySelector('tr[data-trace-id="' + item.trace_id + '"]')?.remove();
      body.prepend(traceRow(item));
    } else {
      body.prepend(logRow(item));
    }
    while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
  }

  function showCounts() {
    fresh.hidden = !paused;
    fresh.textContent = missed + " new";
    skippedNote.hidden = !skipped;
    skippedNote.textContent = skipped + " skipped (more than the live rate limit)";
  }

  button.addEventListener("click", () => {
    paused = !paused;
    button.textContent = paused ? "Resume" : "Pause";
    button.setAttribute("aria-pressed", String(paused));
    if (!paused) {
      held.forEach(add);
      held = [];
      missed = 0;
    }
    showCounts();
  });

  const source = new EventSource(table.dataset.source + location.search);
  source.addEventListener(event, (e) => {
    const item = JSON.parse(e.data);
    if (!paused) return add(item);
    held.push(item);
    if (held.length > MAX_ROWS) held.shift();
    missed += 1;
    showCounts();
  });
  source.addEventListener("skipped", (e) => {
    skipped += JSON.parse(e.data).skipped;
    showCounts();
  });
  source.addEventListener("open", () => { status.textContent = "following"; });
  source.addEventListener("error", () => {
    // closed: refused (too many live tails, bad filter); else the browser retries
    status.textContent = source.readyState === EventSource.CLOSED
      ? "stopped: the collector refused the stream (reload to retry)" : "reconnecting…";
  });
})();
