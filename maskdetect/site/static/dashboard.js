// The maskdetect site dashboard: tiles fed by the JSON API, live views by MJPEG. No external library.
"use strict";
const MaskDashboard = (() => {
  const pct = (x) => (x === null || x === undefined ? "–" : `${Math.round(100 * x)}%`);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const api = (path) => fetch(path, {credentials: "same-origin", cache: "no-store"}).then((r) => {
    if (!r.ok) throw new Error(`${r.status}`);
    return r.json();
  });

  function tile(name, single) {
    const el = document.createElement("section");
    el.className = "tile";
    el.dataset.camera = name;
    const cam = encodeURIComponent(name);
    el.innerHTML = `
      <h2><a href="/camera/${cam}">${esc(name)}</a><span class="badge status">…</span><span class="badge alerting" hidden>ALERT</span></h2>
      <img class="view" alt="live view of ${esc(name)}" src="/api/cameras/${cam}/stream.mjpg">
      <div class="stats">
        <div class="stat"><b class="frames">0</b><span>frames</span></div>
        <div class="stat"><b class="people">–</b><span>people in view</span></div>
        <div class="stat"><b class="compliance">–</b><span>compliance now</span></div>
        <div class="stat"><b class="fps">–</b><span>frames/s</span></div>
      </div>
      <div class="zones"></div>
      <canvas class="chart" width="600" height="90" title="last hour: compliance (line), people (bars)"></canvas>
      <ul class="alerts"></ul>`;
    el.single = single;
    return el;
  }

  function update(el, cam) {
    el.querySelector(".status").textContent = cam.status;
    el.querySelector(".status").className = `badge status ${cam.status}`;
    el.querySelector(".alerting").hidden = !cam.alert_active;
    el.classList.toggle("alert", cam.alert_active);
    el.querySelector(".frames").textContent = cam.frames;
    el.querySelector(".people").textContent = cam.people;
    el.querySelector(".compliance").textContent = pct(cam.compliance);
    el.querySelector(".fps").textContent = cam.fps.toFixed(1);
    el.querySelector(".zones").textContent = Object.entries(cam.zones)
      .map(([z, v]) => `${z}: ${v.people} ${v.people === 1 ? "person" : "people"}, ${pct(v.compliance)}`).join(" · ");
    const keep = el.single ? cam.alerts.length : 4;
    const cam_ = encodeURIComponent(cam.name);
    el.querySelector(".alerts").innerHTML = cam.alerts.slice(-keep).reverse().map((a) => `
      <li class="alert-event"><img class="snapshot" alt="snapshot" src="/api/cameras/${cam_}/${esc(a.snapshot)}">
      <span class="${a.event === "alert_raised" ? "raised" : "cleared"}">${a.event === "alert_raised" ? "raised" : "cleared"}</span>
      <span>#${esc(a.alert_id)} · ${esc(a.wall_time)} · compliance ${pct(a.compliance)}</span></li>`).join("");
  }

  function chart(canvas, history) {
    const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    ctx.fillStyle = "#f9fafb"; ctx.fillRect(0, 0, w, h);
    const now = Date.now() / 1000, x = (t) => w * (1 - (now - t) / 3600);
    const most = Math.max(1, ...history.map((p) => p.people));
    ctx.fillStyle = "#d1d5db";
    for (const p of history) ctx.fillRect(x(p.t), h - (h * 0.5 * p.people) / most, Math.max(1, w / 3600), (h * 0.5 * p.people) / most);
    ctx.strokeStyle = "#2563eb"; ctx.lineWidth = 1.5; ctx.beginPath();
    let pen = false;
    for (const p of history) {
      if (p.compliance === null) { pen = false; continue; }
      const y = h - 4 - (h - 8) * p.compliance;
      pen ? ctx.lineTo(x(p.t), y) : ctx.moveTo(x(p.t), y); pen = true;
    }
    ctx.stroke();
    ctx.fillStyle = "#2563eb";
    for (const p of history) if (p.compliance !== null) ctx.fillRect(x(p.t) - 1, h - 5 - (h - 8) * p.compliance, 2, 2);
    ctx.fillStyle = "#6b7280"; ctx.font = "10px sans-serif"; ctx.fillText("last hour", 4, 11);
  }

  function stamp(ok) {
    document.getElementById("updated").textContent = ok ? `updated ${new Date().toLocaleTimeString()}` : "dashboard unreachable";
  }

  function run(root, names, single) {
    const tiles = {};
    async function refresh() {
      try {
        const cams = single ? [await api(`/api/cameras/${encodeURIComponent(names[0])}`)] : (await api("/api/cameras")).cameras;
        for (const cam of cams) {
          if (!tiles[cam.name]) { tiles[cam.name] = tile(cam.name, single); root.appendChild(tiles[cam.name]); }
          update(tiles[cam.name], cam);
          if (cam.history) chart(tiles[cam.name].querySelector("canvas"), cam.history);
        }
        stamp(true);
      } catch (e) { stamp(false); }
    }
    async function charts() {
      if (single) return;
      for (const name of Object.keys(tiles)) {
        try { chart(tiles[name].querySelector("canvas"), (await api(`/api/cameras/${encodeURIComponent(name)}`)).history); } catch (e) {}
      }
    }
    refresh().then(charts);
    setInterval(refresh, 1000);
    setInterval(charts, 5000);
  }

  return {site: (root) => run(root, [], false), camera: (root, name) => run(root, [name], true)};
})();
