// The live page of `engine blast --dashboard`: one frame a second over server-sent events
// (/events), drawn with the report's uPlot; the controls call the control API (/run/...).
// What the page shows now is also kept in window.live, so a test can read it without pixels.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const asked = new URLSearchParams(location.search).get("p");
  const wanted = (asked ? asked.split(",") : ["50", "90", "99", "99.9"]).map((s) => s.trim()).filter(Boolean);
  const W = Math.min(1000, window.innerWidth - 40);
  const t = [], rps = [], target = [], errs = [], open = [], lat = wanted.map(() => []);
  let lastErrors = 0, model = null;
  const live = (window.live = { frames: 0, now: null, ended: false });

  function chart(title, series, data) {
    const box = document.createElement("div");
    const h = document.createElement("h2");
    h.textContent = title;
    $("charts").append(h, box);
    return new uPlot({ width: W, height: 220, series: [{ label: "seconds" }].concat(series), scales: { x: { time: false } } }, data, box);
  }
  const colours = ["#2ca02c", "#1f77b4", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
  const charts = [
    [chart("Throughput and errors", [
      { label: "req/s", stroke: "#1f77b4", width: 2 }, { label: "asked", stroke: "#9467bd", dash: [4, 4] },
      { label: "errors/s", stroke: "#d62728", width: 2 }]), () => [t, rps, target, errs]],
    [chart("Latency (ms, corrected)", wanted.map((p, i) => ({ label: "p" + p, stroke: colours[i % colours.length], width: 2 }))), () => [t].concat(lat)],
    [chart("Connections", [{ label: "open", stroke: "#7f7f7f", width: 2 }]), () => [t, open]],
  ];

  const ms = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(2) + " ms");
  function figures(f) {
    const rows = [
      ["elapsed", f.t_s.toFixed(0) + " of " + f.planned_s.toFixed(0) + " s (stage " + f.stage + ")"],
      ["rate", f.rps.toFixed(1) + " req/s (asked " + f.target.toFixed(0) + ")"],
    ].concat(wanted.map((p) => ["p" + p, ms(f.latency_ms[p])]), [
      ["max", ms(f.latency_ms.max)],
      ["requests", String(f.requests)],
      ["errors", String(f.errors) + (f.errors ? " (" + Object.entries(f.errors_by_kind).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n).join(", ") + ")" : "")],
      ["status", Object.entries(f.status).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n).join(", ")],
      ["open connections", String(f.open)], ["in flight", String(f.in_flight)],
      ["generator busy", (f.busy * 100).toFixed(0) + "%"],
    ]);
    const body = $("figures").tBodies[0];
    body.replaceChildren(...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      for (const c of [k, v]) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
      return tr;
    }));
  }
  function interventions(list) {
    const table = $("interventions");
    while (table.rows.length > 1) table.deleteRow(1);
    for (const i of list || []) {
      const tr = table.insertRow();
      for (const c of [i.at_s + " s", i.what, i.from, i.to]) tr.insertCell().textContent = String(c);
    }
  }
  async function run(path, body) {
    const init = { method: body === undefined && path !== "/run" ? "POST" : path === "/run" ? "GET" : "POST" };
    if (body !== undefined) { init.headers = { "Content-Type": "application/json" }; init.body = JSON.stringify(body); }
    const r = await fetch(path, init);
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || r.status);
    return j;
  }
  async function refresh() {
    try {
      const s = await run("/run");
      model = s.model;
      $("level-name").textContent = model === "open" ? "rate (req/s)" : "connections";
      if ($("level").value === "") $("level").value = Math.round(s.level);
      $("state").textContent = s.stopping ? "stopping" : s.paused ? "paused" : "running";
      interventions(s.interventions);
      live.run = s;
    } catch (e) { /* before the start: the next frame tries again */ }
  }
  async function act(path, body) {
    try {
      const done = await run(path, body);
      $("said").textContent = done.what + " from " + done.at_s + " s";
    } catch (e) { $("said").textContent = String(e.message || e); }
    refresh();
  }
  $("set").onclick = () => {
    const n = Number($("level").value);
    act(model === "open" ? "/run/rate" : "/run/conns", model === "open" ? { rate: n } : { conns: n });
  };
  $("pause").onclick = () => act("/run/pause");
  $("resume").onclick = () => act("/run/resume");
  $("stop").onclick = () => act("/run/stop");

  function interval(f) {
    // The page's own history and the stream's replay overlap: a frame is drawn once.
    if (t.length && f.t_s <= t[t.length - 1]) return;
    t.push(f.t_s); rps.push(f.rps); target.push(f.target); open.push(f.open);
    errs.push(f.errors - lastErrors); lastErrors = f.errors;
    wanted.forEach((p, i) => lat[i].push(f.latency_ms[p] === undefined ? null : f.latency_ms[p]));
    live.frames += 1;
    live.now = f;
    figures(f);
    // What the page shows, as data (a test reads it from the DOM).
    $("now").textContent = JSON.stringify({ frames: live.frames, t_s: f.t_s, rps: f.rps, p99_ms: f.latency_ms["99"], errors: f.errors, requests: f.requests });
  }
  function end(e) {
    if (live.ended) return;
    live.ended = e;
    $("state").textContent = "ended";
    interventions(e.interventions);
  }
  const history = JSON.parse($("history").textContent);
  for (const h of history) (h.event === "end" ? end : interval)(h.data);
  for (const [c, data] of charts) c.setData(data());
  refresh();
  if (!live.ended) {
    const es = new EventSource("/events");
    es.addEventListener("interval", (ev) => {
      interval(JSON.parse(ev.data));
      for (const [c, data] of charts) c.setData(data());
      if (model === null || live.frames % 5 === 0) refresh();
    });
    es.addEventListener("end", (ev) => {
      end(JSON.parse(ev.data));
      es.close();
    });
  }
})();
