// The live page of `engine blast --dashboard`: report.html's page (report.js draws it from the
// summary so far, each second) with the figures of the last second and the control API's
// buttons on top. The frames come over server-sent events (/events); the page opens with the
// run so far in it (script#history), and at the end it draws the final summary: the same page
// as the results folder's report.html. What the page shows now is also kept in script#now, so
// a test can read it without pixels.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const asked = new URLSearchParams(location.search).get("p");
  const wanted = (asked ? asked.split(",") : ["50", "90", "99", "99.9"]).map((s) => s.trim()).filter(Boolean);
  const points = [];
  let model = null, frames = 0, ended = false, last = null;

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
    $("figures").tBodies[0].replaceChildren(...rows.map(([k, v]) => {
      const tr = document.createElement("tr");
      for (const c of [k, v]) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
      return tr;
    }));
  }
  function interval(f) {
    // The page's own history and the stream's replay overlap: a frame counts once.
    if (points.length && f.t_s <= points[points.length - 1].t_s) return;
    points.push(f.point);
    frames += 1;
    last = f;
    figures(f);
    $("now").textContent = JSON.stringify({ frames: frames, t_s: f.t_s, rps: f.rps, p99_ms: f.latency_ms["99"], errors: f.errors, requests: f.requests });
  }
  function summary(S) {
    if (ended) return;
    S.timeseries = points.slice();
    S.live = true;
    window.EngineReport(S);
  }
  function end(S) {
    ended = true;
    $("state").textContent = "ended";
    window.EngineReport(S);
  }
  async function run(path, body) {
    const init = { method: path === "/run" ? "GET" : "POST" };
    if (body !== undefined) { init.headers = { "Content-Type": "application/json" }; init.body = JSON.stringify(body); }
    const r = await fetch(path, init);
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || r.status);
    return j;
  }
  async function refresh() {
    if (ended) return;
    try {
      const s = await run("/run");
      model = s.model;
      $("level-name").textContent = model === "open" ? "rate (req/s)" : "connections";
      if ($("level").value === "") $("level").value = Math.round(s.level);
      $("state").textContent = s.stopping ? "stopping" : s.paused ? "paused" : "running";
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

  for (const h of JSON.parse($("history").textContent)) {
    if (h.event === "interval") interval(h.data);
    else if (h.event === "end") end(h.data);
  }
  if (ended) return;
  refresh();
  const es = new EventSource("/events");
  es.addEventListener("interval", (ev) => {
    interval(JSON.parse(ev.data));
    if (model === null || frames % 5 === 0) refresh();
  });
  es.addEventListener("summary", (ev) => summary(JSON.parse(ev.data)));
  es.addEventListener("end", (ev) => {
    end(JSON.parse(ev.data));
    es.close();
  });
})();
