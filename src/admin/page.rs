//! The status page at `/`: sites on a world map, their health, the endpoints behind them, and
//! every geo name with the sites it is answered from. It polls `/status` every two seconds.
//!
//! Self-contained: no external fetches. The map is an inline SVG in the equirectangular
//! projection (x = (longitude + 180) * 2, y = (90 - latitude) * 2 in a 720 x 360 box): coarse
//! coastlines drawn once below, and the sites drawn from their coordinates by the script, each a
//! `<g data-site=NAME data-health=up|down>`, with labels moved apart where sites are close.

pub const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>geodns status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2em 1.5em; color: #222; background: #fafafa; }
  h1 { font-size: 1.3em; margin: 0 0 .2em; }
  h2 { font-size: 1.05em; margin: 1em 0 .3em; }
  #meta { color: #555; margin-bottom: .6em; }
  #meta .notready { color: #d62828; }
  #error { color: #d62828; }
  #map { display: block; width: 100%; max-width: 960px; height: auto; background: #dbe8f4; border: 1px solid #b8cbe0; border-radius: 4px; }
  .land { fill: #f3f0e6; stroke: #c9c2aa; stroke-width: .4; stroke-linejoin: round; }
  .water { fill: #dbe8f4; stroke: #c9c2aa; stroke-width: .4; }
  .grid { stroke: #c3d4e6; stroke-width: .4; fill: none; }
  .equator { stroke: #a9bfd6; }
  .site { stroke: #fff; stroke-width: 1.2; }
  .site.up { fill: #2a9d4b; } .site.down { fill: #d62828; }
  .halo { fill: none; stroke: #d62828; stroke-width: 1.2; opacity: .55; }
  .label { font-size: 9px; font-weight: 600; fill: #123; paint-order: stroke; stroke: #fff; stroke-width: 2.5px; stroke-linejoin: round; }
  .label.down { fill: #b01e1e; }
  .leader { stroke: #567; stroke-width: .5; }
  .legend { font-size: 9px; fill: #345; }
  .cols { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
  table { border-collapse: collapse; }
  td, th { padding: .2em .8em .2em 0; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
  th { font-weight: 600; color: #444; white-space: nowrap; }
  .up { color: #1f7a3a; } .down { color: #c02020; font-weight: 600; }
  .badge { display: inline-block; padding: 0 .4em; border-radius: .3em; margin: 0 .3em .15em 0; }
  .badge.up { background: #e3f4e8; } .badge.down { background: #fbe3e3; }
  .dim { color: #777; }
</style>
</head>
<body>
<h1>geodns</h1>
<div id="meta">loading…</div>
<div id="error"></div>
<svg id="map" viewBox="0 10 720 290" width="960" height="387" role="img" aria-label="sites on a world map">
<g id="grid"></g>
<path class="land" d="M24 49L36 40L48 37.4L78 40.8L104 39.6L130 43L160 44L172 38L190 41L198 48L188 52L174 58L172 63L176 66L190 69.6
L196 75L202 71L204 64L206 56L216 57L230 59.4L238 68L246 76L240 79.6L228 81.6L232 83L238 88L228 91L220 93
L220 96.6L212 99L208 106L209 109.6L204 112.4L198 117L200 126L199.2 129.6L196.4 127L194.4 123L192 120L184 119.2
L180 121.6L172 120.8L165.6 124.8L165 132L164.4 136L168 142L171 143.6L178 142.6L179.2 138L186 137L183.4 143
L183 148L192 148.4L193.4 151L192.6 158L197 162L201 161L205 162.8L204 165.4L200 165.4L194 163.6L188.6 160
L185 154L177 152L171 148L166 148.4L158 145.4L149 140L149.4 135L142.4 129.4L135.4 122L130.6 116.6L133.6 122
L138 128L141 133.6L136 130.4L131.6 124.6L128.4 119.2L125.8 115L123 112L118.8 110.8L115 105L111.6 99L112 88
L110.6 83.2L114 82L105 79L99 71L94 66L86 63L78 60L68 58L57 61.6L52 66L44 66.6L36 70L30.4 71.2L38 63L46 62.4
L36 60.2L30.4 55L38 51L30 51ZM214 24L226 19L240 16L280 13L310 14L324 17L320 28L316 40L296 44L280 50L274 60
L264 58L254 48L252 40L244 29L228 26ZM236 46L230 55L218 55L204 51L214 45L200 39L184 33L200 32.6L220 39ZM120 40
L150 42L160 34L140 26L120 30L110 36ZM180 27L204 28L220 22L236 16L200 14L170 18ZM312 49L316 47.2L328 47
L333 49.6L331 51.4L324 53.2L315 52.4ZM190 136.4L196 133.6L206 135.4L211.6 139.6L205 140.2L198 136.4Z
M211.2 143.2L214.6 140.2L220 140.4L223.2 142.8L217.6 144.6ZM205.4 162.8L209 158.4L216.8 155.2L220 157
L232 158.8L238 159L244 166L256 170L260 176.4L262 180L272 185L282 187.6L290 191L290 198L282.4 206L281.6 215
L278 224L271 226L263 233L262.6 237L255 246L250 250L243 249L246 255L236 258L230 262L231 265.6L225 273L228 276
L222 282L223 285L220 290L214 287L209 280L212 272L212.8 264L213 254L217 242L217.4 230L219.6 217L210 211L206 204
L200.8 194L198 190L199.6 186L199 180L200 177L202.4 176.4L205.2 172L205 166ZM341 94L342 102L342 106L348 107.6
L356 106.6L360 102.4L366 96.2L372 93.8L378 91.4L381 94L385 97L391.4 100L392 104L394 102.2L393.8 99.2L397 99.6
L394 98L388 95L384.6 91L387.4 88.8L390 90L399 96.4L400 101L405 107L407 104L408 99L412 98.4L412.4 101L414.6 106
L417 106.8L421 107.4L425 107.8L432 106.4L431.6 111L430 114.4L428.6 117.4L425 117.8L425.2 120.2L429 124L430 121
L433 128L438 137L442 146L446 154L450 154.4L457 152L464 148.8L470 144.6L475.6 142L479.6 135L477 132.6L472.6 128
L472 131L468 131.6L463 131L462 127L460 127L456 121L460 120L463 124.2L469 126.8L474.6 128.4L483 129.6L493 129.2
L495 132.4L500 138L505.6 138L506 146L509 152L512.6 161L515 164L517 162L520 154L520.6 148.4L524.6 146L533 140
L534 137L538 136.4L543 135L544.6 138.6L548.6 142.4L548.4 148L555.2 147L557 154L556.6 163L560.6 169L562.6 174.4
L567 177.4L568.4 177.2L566.8 172L566 169L562 166.4L560 162L558.4 159L560 153L561.8 154.6L565 156L570 162.6
L573.4 159.2L578.4 156.4L578 149.4L573 144L572 140L575.8 137L580 138L583.4 136.8L588 135.4L594 133L599 128.6
L601 124L604 120L602 116L601 112L598.4 110L601 107L605 105.2L602 104.4L597 104L595.4 102L598 101.4L603 98.4
L604.6 99L602.4 102L608.6 100.2L610.6 104.6L613.2 106L612.6 110.8L618.6 109.6L619 106.4L616 103L619.4 98
L621.2 95.4L626 94.4L631 92.4L636.6 86.4L640.8 83L641 77L642.8 74L635 72L631 70.6L642 62L651 61.4L662 61.8
L670 61.4L673.6 57L674 64L672 70L673.4 78L677 74L680 71L684 67.6L686.6 64L692 60L700 60L706 56.6L715 55L718 51
L720 50L720 43L716 41.4L700 40L682 40.8L664 38.2L646 34.6L634 37L622 38L617 34.8L608 33L586 32.6L580 26.6
L568 24.6L557 27.6L537 29.4L521 32.8L521.4 35.8L505.6 34.4L498 34L493.6 38L497 43.6L484 40.4L472 43L467 42.2
L448 43L447 47.2L440 50.8L432 46.8L442 45L426 41.2L418 40L408 38L396 40.4L386 45L385 49L375 55L370 58L371 63
L374 64L381 61.6L383 64L385.6 68L389 68L392 67.6L393.2 65L397.6 60.2L394.6 58L395 55L403 50L408.2 48.4
L410.8 50L404 54L402.8 58L406.6 60.2L416 59L420 60.2L416 61L407 61.6L407 63L408.6 65.4L402.2 66L402 68
L402.4 69.6L399.2 71.2L397.2 70.6L390 72L382 72L381.8 67.2L381.2 64.6L377.2 65.8L376.2 69L377.6 72L374 73
L369.6 74L367 77.2L363.2 78.2L363.2 79.6L360 81L357.4 80.6L356.2 82.6L350.6 83L351.4 84.4L355 85.4L357.6 88
L357 93.2L352 93.2L345 92.6ZM348.6 80L363.4 78L363.4 74.6L360 73L356.8 69L356 66L356.4 64.8L352 64.8L354 62.8
L350 62.8L347.6 66.4L348.8 69.4L354 70.2L353.2 73.2L350.8 73.4L351.2 75.6L349.4 76.6L353.6 77.4ZM348 75.6
L347.6 72.2L348.6 70.4L345.4 69.4L343 71L340 72.4L340.4 76L339.4 76.8L343.6 76.6ZM382 23L394 19L414 20L404 25
L390 26ZM464 37L472 33L480 28L496 26L484 33L474 39ZM348.2 108.4L340.8 119.2L334 124.8L326.2 137L325.8 150.6
L326.6 155.2L330 158.2L333.6 162.2L337.2 166.4L345 171.2L352 169.6L358 170L364 167.4L369 167.6L372 171.4
L377 171L379.2 174L379 178L377.6 182L383.8 190L386.4 198L387.2 204L383.6 214L388.8 225L390.6 234L394 238
L396.6 245L397 248.4L400 249.6L405 248L411.4 248L416 245.6L420 242.4L422 239L425 236.8L425.8 232L431 228
L431 224L429.4 219.6L433.8 215.4L441 211L441 201L438.6 194L438.4 189.4L443 183.4L446.8 179.4L453.2 174.6
L459 166.4L462.4 159L462 156.2L457 157.6L450 159L446.6 156.6L445 154L440 149L437 144L434.6 138L431.2 132.2
L427.6 125L425 120.2L424.6 117.6L418 118.2L410 116.8L400.2 118.4L400 115.6L390.6 115.6L382 113.6L380.4 110
L382 106L379 105.4L366 106.4L356 109.8ZM458.6 204L461 211L459 215L454.4 229.8L450 231L446.6 224L448 214
L452.6 211.6L456 207ZM519.6 160.4L523.6 165L522.4 167.6L520 168L519.6 164ZM620.4 113L622 117.6L624.4 114
L630 113L633.6 111.4L638 110.4L641.6 108.6L642 103.6L643.6 99L642.6 97.2L640 98.8L639.6 102.4L637 104.8
L633.6 105.6L631.6 109L626 109L622 111.2ZM640 97L642.4 96.4L646.6 96L651 93.4L650 91.6L644 89L643.2 91.2
L640.8 93.4ZM644 88L647 82L646 72L644 72L644 82ZM600.2 134L603.2 129.4L603.8 130.8L601.6 136ZM601.2 143
L604.4 143L604 148L608 154L603 152.4L601.2 151L599.6 148ZM604 166L611 160.6L613 166L610.6 168.8L607 164.4Z
M550.6 168.8L556 172L567.6 182L572 186L571.6 191.6L564 187.6L560.8 182L557.2 176.4ZM578 177L580 184L589 188
L593 187L596 178.4L598 170L594 166L591 170L586 174L582 176.6ZM570.4 193.6L572 191.8L577 193L582 192.8
L585.4 194L589 195.6L589 197.2L580 196.4L573 194.8ZM599 191L601 179L609.6 177.2L602 182L605.8 189.2
L602.4 185.6L600.8 191.2ZM622 182L628 181.8L636 183.2L642 185.2L650 188.6L655 192.4L660 200.6L654 200
L648 195.6L642 198.2L636 196.4L635 190L628 188L624 185.6ZM587 224L588 233L590 248L596 250L607 247.8L618 243.2
L622.4 243L628.4 245.4L635.6 251.2L637 248.4L640 256L649 256.4L653 258L660 255L662.6 247.8L667.2 237L666 230
L661.6 225L652.6 218L650.6 210L647 208L645 201.4L643 206L643.4 211L640.4 215.4L633 211.6L631 209.8L633.4 204.4
L625.2 203L620.4 205.8L619 210L614 207.6L610 210L604 215L601.6 219.4L594 221.2ZM649.2 261.4L656.6 261.8
L656 266.4L652 267.2ZM705.4 248.8L709.6 253.6L717 255.4L714 258.6L713.6 261L709.6 262.6L709.2 259.6
L707.6 258.4L709.2 255.2ZM705.6 261L708.4 263.4L706 267.6L702 269L698 273.2L693 272L696.6 268L701.4 265.4Z
M0 360L0 336L60 332L120 326L160 326L210 326L230 312L246 306.6L240 316L236 328L270 336L300 334L340 322L400 320
L440 318L500 316L540 312L600 313L640 313L690 321L700 324L690 336L720 336L720 360Z"/>
<path class="water" d="M416 97.6L418 97.6L423 97.6L430 96L436 98L443 97L443.4 94.8L438 91L435 90.6L433 89.4L430 90L427 91L425 89.2
L427.2 87.8L423.4 86.8L420.4 88.4L419.2 90L417.2 91.4L415.6 94.6ZM458 87L462 86L466 86.4L466.4 89.4L462.6 91
L465.4 96L467.8 98.6L466 102L467.8 105.4L462 106.4L458 104.8L458.8 99.4L456 96.4L455 94L454.6 90.6Z"/>
<g id="sites-layer"></g>
<g class="legend" transform="translate(8 290)"><circle class="site up" cx="4" cy="0" r="3.5"/><text x="11" y="3">up</text><circle class="site down" cx="34" cy="0" r="3.5"/><text x="41" y="3">down</text></g>
</svg>
<div class="cols">
<div>
<h2>Sites</h2>
<table id="sites"><thead><tr><th>site</th><th>location</th><th>health</th></tr></thead><tbody></tbody></table>
</div>
<div>
<h2>Endpoints</h2>
<table id="endpoints"><thead><tr><th>check</th><th>address</th><th>state</th><th>reason</th></tr></thead><tbody></tbody></table>
</div>
</div>
<h2>Names</h2>
<table id="names"><thead><tr><th>name</th><th>TTL now</th><th>sites (configured order)</th></tr></thead><tbody></tbody></table>
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
(function drawGrid() {
  const g = document.getElementById("grid");
  for (let lon = -180; lon <= 180; lon += 30) g.appendChild(el("line", {class: "grid", x1: x(lon), y1: 0, x2: x(lon), y2: 360}));
  for (let lat = -60; lat <= 90; lat += 30) g.appendChild(el("line", {class: "grid" + (lat === 0 ? " equator" : ""), x1: 0, y1: y(lat), x2: 720, y2: y(lat)}));
})();
function overlaps(a, b) {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}
// Places each label next to its site where it covers no other label or site: right, left,
// above, below, then further out with a leader line.
function placeLabels(items) {
  const taken = items.map(it => ({x: it.cx - 6, y: it.cy - 6, width: 12, height: 12}));
  const spots = [[8, 3, "start"], [-8, 3, "end"], [6, -8, "start"], [6, 13, "start"], [-6, -8, "end"], [-6, 13, "end"]];
  for (let d = 1; d <= 6; d++) spots.push([8, 3 + 11 * d, "start"], [8, 3 - 11 * d, "start"], [-8, 3 + 11 * d, "end"], [-8, 3 - 11 * d, "end"]);
  for (const it of items) {
    let box = null, chosen = spots[0];
    for (const s of spots) {
      it.text.setAttribute("x", it.cx + s[0]);
      it.text.setAttribute("y", it.cy + s[1]);
      it.text.setAttribute("text-anchor", s[2]);
      box = it.text.getBBox();
      chosen = s;
      if (!taken.some(t => overlaps(t, box))) break;
    }
    taken.push(box);
    if (Math.abs(chosen[1] - 3) > 11) {
      const ly = it.cy + chosen[1] - 3;
      it.group.insertBefore(el("line", {class: "leader", x1: it.cx, y1: it.cy, x2: it.cx + chosen[0] * 0.8, y2: ly}), it.group.firstChild);
    }
  }
}
function drawMap(sites) {
  const layer = document.getElementById("sites-layer");
  layer.replaceChildren();
  const items = [];
  for (const s of sites) {
    const health = s.up ? "up" : "down";
    const g = el("g", {"data-site": s.name, "data-health": health});
    const cx = x(s.longitude), cy = y(s.latitude);
    if (!s.up) g.appendChild(el("circle", {class: "halo", cx, cy, r: 7}));
    g.appendChild(el("circle", {class: "site " + health, cx, cy, r: 4}, undefined));
    g.lastChild.appendChild(el("title", {}, `${s.name}: ${health}`));
    const text = el("text", {class: "label " + health}, s.name + (s.up ? "" : " (down)"));
    g.appendChild(text);
    layer.appendChild(g);
    items.push({cx, cy, text, group: g});
  }
  placeLabels(items);
  // Show every site: widen the default view (latitudes 85 to -60) if one lies outside it.
  const ys = sites.map(s => y(s.latitude));
  const top = Math.max(0, Math.min(10, ...ys.map(v => v - 12))), bottom = Math.min(360, Math.max(300, ...ys.map(v => v + 12)));
  document.getElementById("map").setAttribute("viewBox", `0 ${top} 720 ${bottom - top}`);
  document.querySelector(".legend").setAttribute("transform", `translate(8 ${bottom - 10})`);
}
function render(st) {
  const meta = document.getElementById("meta");
  meta.replaceChildren();
  const age = st.built_at ? Math.max(0, Math.round(Date.now() / 1000 - st.built_at)) : null;
  meta.append(`version ${st.version} · table generation ${st.generation}` + (age === null ? "" : ` (built ${age} s ago)`) + ` · zones ${st.zones.join(", ")} · `);
  const ready = document.createElement("span");
  ready.textContent = st.ready ? "ready" : "not ready: " + st.not_ready.join("; ");
  if (!st.ready) ready.className = "notready";
  meta.append(ready);
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
  const eps = document.querySelector("#endpoints tbody");
  eps.replaceChildren();
  for (const e of st.endpoints) {
    const r = eps.insertRow();
    cell(r, e.check); cell(r, e.address); cell(r, e.state, e.state.includes("down") ? "down" : "up"); cell(r, e.reason);
  }
  if (st.endpoints.length === 0) cell(eps.insertRow(), "no health-checked endpoints", "dim").colSpan = 4;
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
