"""The live page of `framecast stream`: the incoming frame beside the next K predicted frames.

Plain HTML + JS, no external assets (it works offline). It polls /state.json a few times per
frame period and, when a new frame is ready (`seq` changed), reloads /observed.jpg and
/predicted.jpg; fps, latency (capture -> model -> page) and drops are shown under the images.
"""

from __future__ import annotations

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>framecast stream</title>
<style>
  body { font: 14px system-ui, sans-serif; background: #111; color: #ddd; margin: 1.5em; }
  h1 { font-size: 16px; font-weight: 600; margin: 0 0 .8em; }
  .row { display: flex; gap: 16px; align-items: flex-start; }
  figure { margin: 0; }
  figcaption { color: #999; margin-top: .3em; }
  img { image-rendering: pixelated; background: #222; min-width: 64px; min-height: 64px; }
  #stats { margin-top: 1em; font-variant-numeric: tabular-nums; }
  #stats span { margin-right: 1.5em; }
  .ended { color: #e88; }
</style>
</head>
<body>
<h1>framecast stream: <span id="source"></span></h1>
<div class="row">
  <figure><img id="observed" alt="incoming frame"><figcaption>incoming</figcaption></figure>
  <figure><img id="predicted" alt="predicted frames">
    <figcaption>next <span id="horizon">?</span> predicted frames</figcaption></figure>
</div>
<div id="stats">
  <span>frame <b id="seq">-</b></span>
  <span>fps <b id="fps">-</b></span>
  <span>latency <b id="latency">-</b></span>
  <span>page latency <b id="page-latency">-</b></span>
  <span>dropped <b id="dropped">0</b></span>
  <span id="status"></span>
</div>
<script>
"use strict";
let shown = -1, loading = false;
function ms(v) { return v === null || v === undefined ? "-" : v.toFixed(1) + " ms"; }
function load(img, url) {
  return new Promise((ok) => { img.onload = img.onerror = () => ok(); img.src = url; });
}
async function tick() {
  try {
    const r = await fetch("/state.json", {cache: "no-store"});
    const s = await r.json();
    document.getElementById("source").textContent = s.source;
    document.getElementById("horizon").textContent = s.horizon;
    document.getElementById("fps").textContent = s.fps.toFixed(1);
    document.getElementById("latency").textContent = ms(s.latency_ms);
    document.getElementById("page-latency").textContent = ms(s.page_latency_ms);
    document.getElementById("dropped").textContent = s.dropped;
    const st = document.getElementById("status");
    st.textContent = s.running ? "" : "stream ended";
    st.className = s.running ? "" : "ended";
    if (s.seq >= 0 && s.seq !== shown && !loading) {
      loading = true;
      const q = "?seq=" + s.seq;
      await Promise.all([
        load(document.getElementById("observed"), "/observed.jpg" + q),
        load(document.getElementById("predicted"), "/predicted.jpg" + q),
      ]);
      shown = s.seq;
      document.getElementById("seq").textContent = s.seq;
      loading = false;
    }
  } catch (e) {
    document.getElementById("status").textContent = "disconnected";
  }
  setTimeout(tick, 15);
}
tick();
</script>
</body>
</html>
"""
