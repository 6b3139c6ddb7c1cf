//! The status page at `/`: sites on a world map (an SVG drawn in the browser from the sites'
//! coordinates, equirectangular, no external fetches), their health, and every geo name with
//! the sites it is answered from. It polls `/status` every two seconds.

pub const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>geodns status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
  h1 { font-size: 1.3em; margin: 0 0 .3em; }
  #meta { color: #666; margin-bottom: 1em; }
  svg { background: #e8f0f8; border: 1px solid #bcd; max-width: 100%; height: auto; }
  .grid { stroke: #c8d8e8; stroke-width: .5; fill: none; }
  .site.up { fill: #2a9d4b; } .site.down { fill: #d62828; }
  .label { font-size: 11px; fill: #123; }
  table { border-collapse: collapse; margin-top: 1em; }
  td, th { padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
  .up { color: #2a9d4b; } .down { color: #d62828; }
  .badge { display: inline-block; padding: 0 .4em; border-radius: .3em; margin-right: .3em; }
  .badge.up { background: #e3f4e8; } .badge.down { background: #fbe3e3; }
  #error { color: #d62828; }
</style>
</head>
<body>
<h1>geodns</h1>
<div id="meta">loading…</div>
<div id="error"></div>
<svg id="map" viewBox="0 0 720 360" width="720" height="360" role="img" aria-label="sites on a world map"></svg>
<h2>Sites</h2>
<table id="sites"><thead><tr><th>site</th><th>location</th><th>health</th></tr></thead><tbody></tbody></table>
<h2>Names</h2>
<table id="names"><thead><tr><th>name</th><th>TTL</th><th>sites (configured order)</th></tr></thead><tbody></tbody></table>
<h2>Endpoints</h2>
<table id="endpoints"><thead><tr><th>check</th><th>address</th><th>state</th><th>reason</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const NS = "http://www.w3.org/2000/svg";
const x = lon => (lon + 180) * 2, y = lat => (90 - lat) * 2;
function el(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function drawMap(sites) {
  const svg = document.getElementById("map");
  svg.replaceChildren();
  for (let lon = -180; lon <= 180; lon += 30) svg.appendChild(el("line", {class: "grid", x1: x(lon), y1: 0, x2: x(lon), y2: 360}));
  for (let lat = -90; lat <= 90; lat += 30) svg.appendChild(el("line", {class: "grid", x1: 0, y1: y(lat), x2: 720, y2: y(lat)}));
  svg.appendChild(el("line", {class: "grid", x1: 0, y1: y(0), x2: 720, y2: y(0), style: "stroke:#9ab"}));
  for (const s of sites) {
    const g = el("g", {"data-site": s.name, "data-health": s.up ? "up" : "down"});
    g.appendChild(el("circle", {class: "site " + (s.up ? "up" : "down"), cx: x(s.longitude), cy: y(s.latitude), r: 6}));
    g.appendChild(el("text", {class: "label", x: x(s.longitude) + 9, y: y(s.latitude) + 4}, s.name + (s.up ? "" : " (down)")));
    svg.appendChild(g);
  }
}
function render(st) {
  document.getElementById("meta").textContent =
    `version ${st.version} · table generation ${st.generation} · ${st.ready ? "ready" : "not ready: " + st.not_ready.join("; ")} · zones ${st.zones.join(", ")}`;
  drawMap(st.sites);
  const sites = document.querySelector("#sites tbody");
  sites.replaceChildren();
  for (const s of st.sites) {
    const r = sites.insertRow();
    r.dataset.site = s.name;
    cell(r, s.name);
    cell(r, `${s.latitude.toFixed(2)}, ${s.longitude.toFixed(2)}`);
    cell(r, s.up ? "up" : "down", s.up ? "up" : "down");
  }
  const names = document.querySelector("#names tbody");
  names.replaceChildren();
  for (const n of st.names) {
    const r = names.insertRow();
    cell(r, n.name);
    cell(r, String(n.ttl));
    const td = r.insertCell();
    for (const s of n.sites) {
      const b = document.createElement("span");
      b.className = "badge " + (s.up ? "up" : "down");
      b.textContent = `${s.site} ${s.up ? "up" : "down"} (${s.addresses.join(", ")})`;
      td.appendChild(b);
    }
  }
  const eps = document.querySelector("#endpoints tbody");
  eps.replaceChildren();
  for (const e of st.endpoints) {
    const r = eps.insertRow();
    cell(r, e.check); cell(r, e.address); cell(r, e.state, e.state.includes("down") ? "down" : "up"); cell(r, e.reason);
  }
}
async function refresh() {
  try {
    const r = await fetch("/status", {cache: "no-store"});
    render(await r.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot reach /status: " + e;
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"##;
