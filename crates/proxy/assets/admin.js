// The proxy's admin page: /stats and /faults each second, drawn with uPlot; each rule has a
// switch (POST /faults/ID/on or /off). What the page shows is also kept in script#now, so a
// test can read it without pixels.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const W = Math.min(1000, window.innerWidth - 40);
  const t = [], rps = [], errs = [], ttfb = [], total = [];
  let last = null;
  function chart(title, series, data) {
    const box = document.createElement("div");
    const h = document.createElement("h2");
    h.textContent = title;
    $("charts").append(h, box);
    return new uPlot({ width: W, height: 200, series: [{ label: "seconds" }].concat(series), scales: { x: { time: false } } }, data, box);
  }
  const charts = [
    [chart("Requests", [{ label: "req/s", stroke: "#1f77b4", width: 2 }, { label: "5xx/s", stroke: "#d62728", width: 2 }]), () => [t, rps, errs]],
    [chart("Server-side latency, p99 since the start (ms)", [{ label: "to headers", stroke: "#2ca02c", width: 2 }, { label: "to the end", stroke: "#9467bd", width: 2 }]), () => [t, ttfb, total]],
  ];
  const ms = (v) => (v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(2) + " ms");
  function rows(table, list) {
    const body = table.tBodies[0];
    body.replaceChildren(...list.map(([k, v]) => {
      const tr = document.createElement("tr");
      for (const c of [k, v]) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
      return tr;
    }));
  }
  async function get(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }
  async function toggle(id, on) {
    const r = await fetch("/faults/" + encodeURIComponent(id) + (on ? "/on" : "/off"), { method: "POST" });
    $("state").textContent = r.ok ? (id + (on ? " on" : " off")) : ("switching " + id + " failed: " + r.status);
    await tick();
  }
  function rules(list, counts) {
    const table = $("rules");
    while (table.rows.length > 1) table.deleteRow(1);
    for (const r of list) {
      const c = counts.find((x) => x.id === r.id) || { matched: 0, injected: 0 };
      const on = r.enabled !== false;
      const tr = table.insertRow();
      tr.className = on ? "on" : "off";
      tr.insertCell().textContent = r.id;
      for (const v of [r.match || {}, r.action]) {
        const code = document.createElement("code");
        code.textContent = JSON.stringify(v);
        tr.insertCell().append(code);
      }
      tr.insertCell().textContent = String(c.matched);
      tr.insertCell().textContent = String(c.injected);
      tr.insertCell().textContent = on ? "on" : "off";
      const b = document.createElement("button");
      b.textContent = on ? "switch off" : "switch on";
      b.dataset.rule = r.id;
      b.dataset.to = on ? "off" : "on";
      b.onclick = () => toggle(r.id, !on);
      tr.insertCell().append(b);
    }
  }
  async function tick() {
    let s, list;
    try {
      [s, list] = await Promise.all([get("/stats"), get("/faults")]);
    } catch (e) {
      $("state").textContent = String(e.message || e);
      return;
    }
    const L = s.server_latency_ms;
    if (last && s.as_of_s > last.as_of_s) {
      const dt = s.as_of_s - last.as_of_s;
      t.push(s.as_of_s);
      rps.push((s.requests - last.requests) / dt);
      errs.push((s.responses["5xx"] - last.responses["5xx"]) / dt);
      ttfb.push(L.ttfb.p99); total.push(L.total.p99);
      for (const [c, data] of charts) c.setData(data());
    }
    if (!last || s.as_of_s > last.as_of_s) last = s;
    rows($("figures"), [
      ["up", s.uptime_s.toFixed(0) + " s"],
      ["requests", String(s.requests) + (rps.length ? " (" + rps[rps.length - 1].toFixed(1) + " req/s)" : "")],
      ["responses", Object.entries(s.responses).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n).join(", ") || "none"],
      ["server-side latency to headers", "p50 " + ms(L.ttfb.p50) + ", p99 " + ms(L.ttfb.p99)],
      ["server-side latency to the end", "p50 " + ms(L.total.p50) + ", p99 " + ms(L.total.p99)],
      ["faults injected", Object.entries(s.faults_injected).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n).join(", ") || "none"],
      ["faults active", String(s.faults_active) + (s.faults_overflow ? ", skipped over the cap " + s.faults_overflow : "")],
      ["connections open", String(s.connections.open)],
      ["upstream errors", Object.entries(s.upstream_errors).filter(([, n]) => n > 0).map(([k, n]) => k + " " + n).join(", ") || "none"],
    ]);
    rules(list, s.fault_rules);
    $("now").textContent = JSON.stringify({ requests: s.requests, responses: s.responses, rules: s.fault_rules });
  }
  tick();
  setInterval(tick, 1000);
})();
