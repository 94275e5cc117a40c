// Renders a run's page from its summary: report.html from the summary embedded in it, and
// the live page of `engine blast --dashboard` from the summary so far, each second (one page,
// one code). No network: uPlot is inlined next to this script. What each chart shows is also
// written back into the page as JSON (script#charts), so a test can read it without parsing
// pixels.
window.EngineReport = function (S) {
  "use strict";
  const main = document.getElementById("main");
  main.replaceChildren();
  const W = Math.min(1000, window.innerWidth - 40);
  const described = [];

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
  const pct = (v) => (v * 100).toFixed(2) + "%";
  // A threshold's measured value in its metric's unit.
  function measured(expr, v) {
    const metric = expr.replace(/[{<>].*$/, "").trim();
    if (metric === "error_rate" || metric === "checks" || metric === "check_rate") return pct(v);
    if (metric === "rps") return v.toFixed(1) + " req/s";
    if (metric === "recovery_s") return v.toFixed(1) + " s";
    if (metric === "capacity" || metric === "errors") return String(v);
    return ms(v);
  }
  const L = S.latency_ms, U = S.latency_uncorrected_ms, OK = S.latency_ok_ms;
  const E = S.errors;
  const attempts = S.requests + E.total - E.status - (E.check || 0) - (E.grpc || 0);

  document.getElementById("title").textContent = "engine blast " + S.target + (S.live ? " (live)" : "");
  const facts = [
    ["model", S.model + ", " + S.conns + " connections, " + S.shards + " shard(s)"],
    ["requests", S.requests + " in " + S.duration_s + " s (" + S.rps.toFixed(1) + " req/s)"],
    ["errors", E.total + " (connect " + E.connect + ", timeout " + E.timeout + ", reset " + E.reset + ", closed " + E.closed +
      ", parse " + E.parse + ", status " + E.status + ", tls " + E.tls + (S.checks ? ", check " + E.check : "") +
      (S.http2 ? ", reset_stream " + E.reset_stream + ", h2 " + E.h2 : "") + (S.grpc ? ", grpc " + E.grpc : "") + "); error rate " + pct(attempts > 0 ? E.total / attempts : 0)],
    ["connections", "opened " + S.connections.opened + ", peak open " + S.connections.peak_open],
  ];
  if (S.grpc) {
    facts.push(["gRPC", S.grpc.call + ": " + (Object.entries(S.grpc.codes).map(([k, n]) => k + " " + n).join(", ") || "no calls answered")]);
  }
  if (S.http2) {
    const H = S.http2;
    const conns = Object.entries(H.connections).map(([k, n]) => n + " " + k).join(", ") || "none";
    const resets = Object.entries(H.reset_streams).map(([k, n]) => k + " " + n).join(", ");
    facts.push(["HTTP/2", H.mode + ", " + H.streams + (H.streams === 1 ? " stream" : " streams") + " a connection; connections " + conns +
      (H.capped_at ? "; the server capped streams at " + H.capped_at : "") +
      "; GOAWAY " + H.goaways + ", requests sent again " + H.retried + (resets ? "; streams reset: " + resets : "")]);
  }
  if (S.tls) {
    const T = S.tls, TE = T.errors;
    facts.push(["TLS", T.version + " " + T.cipher + "; handshakes " + T.handshakes_full + " full, " + T.handshakes_resumed +
      " resumed (" + pct(T.resumed_share) + "), " + T.handshakes_per_s.toFixed(1) + "/s"]);
    const reasons = Object.entries(TE).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n);
    if (reasons.length) facts.push(["TLS errors", reasons.join(", ")]);
  }
  // Arrival-rate flows schedule iterations (users walking a flow), not requests.
  if (S.schedule && S.iterations) facts.push(["asked iteration rate", S.schedule.target_rps + " iterations/s; started " + S.schedule.sent + " of " + S.schedule.expected + ", " + S.iterations.completed + " completed" + (S.schedule.behind ? " — BEHIND SCHEDULE" : "")]);
  else if (S.schedule) facts.push(["asked rate", S.schedule.target_rps + " req/s; sent " + S.schedule.sent + " of " + S.schedule.expected + (S.schedule.behind ? " — BEHIND SCHEDULE" : "")]);
  if (S.stopped_by) facts.push(["safety stop", S.stopped_by.expr + " at " + S.stopped_by.at_s + " s (measured " + measured(S.stopped_by.expr, S.stopped_by.value) + ")"]);
  if (S.generator && S.generator.saturated) facts.push(["generator", "SATURATED: latency includes the engine's own queueing"]);
  if (S.interrupted) facts.push(["interrupted", "yes"]);
  if (S.checks) {
    const share = (c) => pct(c.rate) + " passed (" + c.passed + " of " + (c.passed + c.failed) + ")";
    facts.push(["checks", share(S.checks)]);
    for (const [name, c] of Object.entries(S.checks.by_name)) facts.push(["check " + name, share(c)]);
  }
  section("Summary", table(["", ""], facts));
  const lrow = (label, l) => [label, ms(l.mean), ms(l.p50), ms(l.p90), ms(l.p95), ms(l.p99), ms(l.p999), ms(l.max)];
  const lrows = [lrow("corrected", L), lrow("uncorrected", U)];
  if (E.status > 0) lrows.push(lrow("expected statuses", OK));
  for (const [cls, l] of Object.entries(S.latency_by_class_ms || {})) lrows.push(lrow(cls, l));
  if (S.connect_ms) lrows.push(lrow("TCP connect", S.connect_ms));
  if (S.tls_handshake_ms) lrows.push(lrow("TLS handshake", S.tls_handshake_ms));
  section("Latency", table(["", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"], lrows));

  if (S.profile) {
    const p = S.profile;
    const rows = [["profile", p.name + " at peak " + p.peak], ["a level holds when", p.criterion]];
    if (p.capacity !== undefined) rows.push(["capacity", p.capacity + " (the last level that held)"]);
    if (p.failed_at !== undefined) rows.push(["failed level", String(p.failed_at)]);
    if (p.best_rps !== undefined) rows.push(["best held rate", p.best_rps.toFixed(1) + " req/s"]);
    if (p.recovery_s !== undefined) rows.push(["recovery", p.recovery_s.toFixed(1) + " s after the drop"]);
    else if (p.name === "spike" || p.name === "recovery") rows.push(["recovery", "p99 never returned to the baseline"]);
    section("Profile", el("div", { id: "profile" }, table(["", ""], rows)));
    // Each level over its hold (the ramp up to it is not judged).
    if (p.levels && p.levels.length) {
      const q = (v) => (v === undefined || v === null ? "-" : ms(v));
      // Checks passed over each hold, when the plan has checks.
      const checked = p.levels.some((l) => l.checks_passed !== undefined);
      const checks = (l) => {
        const n = (l.checks_passed || 0) + (l.checks_failed || 0);
        return n ? pct(l.checks_passed / n) : "-";
      };
      const lrows = p.levels.map((l) => [String(l.level), l.held_s.toFixed(0) + " s", l.rps.toFixed(1) + " req/s", q(l.p50_ms), q(l.p95_ms), ms(l.p99_ms), pct(l.error_rate)].concat(checked ? [checks(l)] : [], [l.pass ? "held" : "FAILED: " + l.failed_on]));
      const heads = ["level", "held", "rate", "p50", "p95", "p99", "errors"].concat(checked ? ["checks"] : [], ["verdict"]);
      section("Levels", el("div", { id: "levels" }, table(heads, lrows)));
    }
  }

  const ts = S.timeseries || [];
  const t = ts.map((p) => p.t_s);
  // An interval without responses has no latency: a gap, not a 0.
  const lat = (f) => ts.map((p) => (p.requests > 0 ? f(p) : null));
  function chart(title, series, data, scales, axes, xLabel) {
    const box = el("div", { class: "chart" });
    section(title, box);
    const sc = Object.assign({ x: { time: false } }, scales || {});
    new uPlot({ width: W, height: 280, series: [{ label: xLabel || "seconds" }].concat(series), scales: sc, axes: axes }, data, box);
    described.push({
      title: title,
      series: series.map((s) => ({ label: s.label, scale: s.scale || "y" })),
      axes: (axes || []).slice(1).map((a) => ({ scale: a.scale || "y", label: a.label })),
      data: data.slice(1),
    });
  }
  chart("Throughput and errors", [
    { label: "req/s", stroke: "#1f77b4", width: 2, scale: "rps" },
    { label: "errors/s", stroke: "#d62728", width: 2, scale: "rps" },
  ], [t, ts.map((p) => p.rps), ts.map((p) => p.errors)], {}, [
    { label: "seconds" }, { scale: "rps", label: "per second" },
  ]);
  const closed = S.model === "closed";
  chart("Connections", [
    { label: "open connections", stroke: "#7f7f7f", width: 2, scale: "conns" },
  ].concat(closed ? [{ label: "target connections", stroke: "#9467bd", dash: [4, 4], scale: "conns" }] : [
    { label: "asked req/s", stroke: "#9467bd", dash: [4, 4], scale: "rate" },
  ]), [t, ts.map((p) => p.open), ts.map((p) => p.target)], {}, [
    { label: "seconds" }, { scale: "conns", label: "connections" },
  ].concat(closed ? [] : [{ scale: "rate", side: 1, label: "req/s", grid: { show: false } }]));
  chart("Latency over time (ms)", [
    { label: "p50", stroke: "#2ca02c", width: 2 },
    { label: "p99", stroke: "#d62728", width: 2 },
    { label: "p50 uncorrected", stroke: "#2ca02c", dash: [5, 5] },
    { label: "p99 uncorrected", stroke: "#d62728", dash: [5, 5] },
  ], [t, lat((p) => p.p50_ms), lat((p) => p.p99_ms), lat((p) => p.p50_uncorrected_ms), lat((p) => p.p99_uncorrected_ms)],
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
  const scenarios = Object.entries(S.scenarios || {});
  if (scenarios.length) {
    const q = (sc, v) => (sc.requests ? ms(v) : "no data");
    section("Scenarios", el("div", { id: "scenarios" }, table(
      ["scenario", "model", "conns", "from", "to", "requests", "req/s", "p50", "p95", "p99", "errors", "scheduled"],
      scenarios.map(([name, sc]) => [name, sc.model, sc.conns, sc.start_s.toFixed(1) + " s", (sc.start_s + sc.planned_s).toFixed(1) + " s",
        sc.requests, sc.rps.toFixed(1), q(sc, sc.latency_ms.p50), q(sc, sc.latency_ms.p95), q(sc, sc.latency_ms.p99), sc.errors.total,
        sc.scheduled_requests !== undefined ? sc.scheduled_requests + " requests"
          : sc.scheduled_iterations !== undefined ? sc.scheduled_iterations + " iterations" : ""]))));
  }
  const byName = Object.entries(S.requests_by_name || {});
  section("Requests by name", byName.length
    ? table(["name", "method", "weight", "requests", "req/s", "p50", "p95", "p99", "errors", "status"], byName.map(([name, n]) => [
        name, n.method, n.weight, n.requests, n.rps.toFixed(1), ms(n.latency_ms.p50), ms(n.latency_ms.p95), ms(n.latency_ms.p99),
        n.errors.total, Object.entries(n.status).map(([k, v]) => k + ": " + v).join(", ")]))
    : el("p", {}, "One request (no scenario)."));
  if ((S.interventions || []).length) {
    section("Interventions", el("div", { id: "interventions" }, table(["at", "what", "from", "to"],
      S.interventions.map((i) => [i.at_s + " s", i.what, String(i.from), String(i.to)]))));
  }
  section("Thresholds", (S.thresholds || []).length
    ? el("div", { id: "thresholds" }, table(["expression", "result", "measured"], S.thresholds.map((h) => [h.expr, h.pass ? "PASS" : "FAIL", measured(h.expr, h.value)])))
    : el("p", {}, "No thresholds were set."));
  let out = document.getElementById("charts");
  if (!out) {
    out = el("script", { type: "application/json", id: "charts" });
    document.body.append(out);
  }
  out.textContent = JSON.stringify(described);
  document.body.setAttribute("data-rendered", "ok");
};
(function () {
  const embedded = document.getElementById("summary").textContent.trim();
  if (embedded) window.EngineReport(JSON.parse(embedded));
})();
