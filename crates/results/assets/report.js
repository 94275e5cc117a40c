// Renders report.html from the summary JSON embedded in the page. No network: uPlot is
// inlined next to this script.
(function () {
  "use strict";
  const S = JSON.parse(document.getElementById("summary").textContent);
  const main = document.getElementById("main");
  const W = Math.min(1000, window.innerWidth - 40);

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of [].concat(children || [])) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }
  function table(head, rows) {
    return el("table", {}, [el("tr", {}, head.map((h) => el("th", {}, h))), ...rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))]);
  }
  function section(title, body) {
    main.append(el("h2", {}, title));
    main.append(body);
  }
  const ms = (v) => (v >= 1000 ? (v / 1000).toFixed(2) + " s" : v >= 1 ? v.toFixed(2) + " ms" : (v * 1000).toFixed(0) + " µs");
  const L = S.latency_ms, U = S.latency_uncorrected_ms;

  document.getElementById("title").textContent = "engine blast " + S.target;
  const facts = [
    ["model", S.model + ", " + S.conns + " connections, " + S.shards + " shard(s)"],
    ["requests", S.requests + " in " + S.duration_s + " s (" + S.rps.toFixed(1) + " req/s)"],
    ["errors", S.errors.total + " (connect " + S.errors.connect + ", timeout " + S.errors.timeout + ", reset " + S.errors.reset + ", closed " + S.errors.closed + ", parse " + S.errors.parse + ")"],
    ["connections", "opened " + S.connections.opened + ", peak open " + S.connections.peak_open],
  ];
  if (S.schedule) facts.push(["asked rate", S.schedule.target_rps + " req/s; sent " + S.schedule.sent + " of " + S.schedule.expected + (S.schedule.behind ? " — BEHIND SCHEDULE" : "")]);
  if (S.stopped_by) facts.push(["safety stop", S.stopped_by.expr + " at " + S.stopped_by.at_s + " s"]);
  if (S.interrupted) facts.push(["interrupted", "yes"]);
  section("Summary", table(["", ""], facts));
  section("Latency", table(["", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"], [
    ["corrected", ms(L.mean), ms(L.p50), ms(L.p90), ms(L.p95), ms(L.p99), ms(L.p999), ms(L.max)],
    ["uncorrected", ms(U.mean), ms(U.p50), ms(U.p90), ms(U.p95), ms(U.p99), ms(U.p999), ms(U.max)],
  ]));

  const ts = S.timeseries || [];
  const t = ts.map((p) => p.t_s);
  function chart(title, series, data, scales, axes, xLabel) {
    const box = el("div", { class: "chart" });
    section(title, box);
    const sc = Object.assign({ x: { time: false } }, scales || {});
    new uPlot({ width: W, height: 280, series: [{ label: xLabel || "seconds" }].concat(series), scales: sc, axes: axes }, data, box);
  }
  chart("Throughput and errors", [
    { label: "req/s", stroke: "#1f77b4", width: 2, scale: "rps" },
    { label: "errors/s", stroke: "#d62728", width: 2, scale: "err" },
    { label: "open connections", stroke: "#7f7f7f", dash: [4, 4], scale: "rps" },
  ], [t, ts.map((p) => p.rps), ts.map((p) => p.errors), ts.map((p) => p.open)], {}, [
    { label: "seconds" }, { scale: "rps", label: "req/s, connections" }, { scale: "err", side: 1, label: "errors/s", grid: { show: false } },
  ]);
  chart("Latency over time (ms)", [
    { label: "p50", stroke: "#2ca02c", width: 2 },
    { label: "p99", stroke: "#d62728", width: 2 },
    { label: "p50 uncorrected", stroke: "#2ca02c", dash: [5, 5] },
    { label: "p99 uncorrected", stroke: "#d62728", dash: [5, 5] },
  ], [t, ts.map((p) => p.p50_ms), ts.map((p) => p.p99_ms), ts.map((p) => p.p50_uncorrected_ms), ts.map((p) => p.p99_uncorrected_ms)],
  {}, [{ label: "seconds" }, { label: "ms" }]);

  // HdrHistogram-style: x = 1/(1-p) on a log axis, so the tail gets the room.
  const D = S.latency_distribution || { percentile: [], corrected_ms: [], uncorrected_ms: [] };
  const keep = D.percentile.map((p, i) => i).filter((i) => D.percentile[i] < 100);
  const x = keep.map((i) => 1 / (1 - D.percentile[i] / 100));
  chart("Latency by percentile (ms)", [
    { label: "corrected", stroke: "#1f77b4", width: 2 },
    { label: "uncorrected", stroke: "#ff7f0e", width: 2, dash: [5, 5] },
  ], [x, keep.map((i) => D.corrected_ms[i]), keep.map((i) => D.uncorrected_ms[i])],
  { x: { time: false, distr: 3, log: 10 } },
  [{
    label: "percentile",
    splits: () => [1, 2, 10, 100, 1000, 10000, 100000].filter((v) => v <= x[x.length - 1] * 1.0001),
    values: (u, vals) => vals.map((v) => ({ 1: "0%", 2: "50%", 10: "90%", 100: "99%", 1000: "99.9%", 10000: "99.99%", 100000: "99.999%" }[v] || "")),
  }, { label: "ms" }], "1/(1-p)");

  section("Status codes", table(["status", "responses"], Object.entries(S.status || {})));
  const byName = Object.entries(S.requests_by_name || {});
  section("Requests by name", byName.length
    ? table(["name", "method", "weight", "requests", "req/s", "p50", "p95", "p99", "errors", "status"], byName.map(([name, n]) => [
        name, n.method, n.weight, n.requests, n.rps.toFixed(1), ms(n.latency_ms.p50), ms(n.latency_ms.p95), ms(n.latency_ms.p99),
        n.errors.total, Object.entries(n.status).map(([k, v]) => k + ": " + v).join(", ")]))
    : el("p", {}, "One request (no scenario)."));
  section("Thresholds", (S.thresholds || []).length
    ? table(["expression", "result", "measured"], S.thresholds.map((h) => [h.expr, h.pass ? "PASS" : "FAIL", h.value]))
    : el("p", {}, "No thresholds were set."));
  document.body.setAttribute("data-rendered", "ok");
})();
