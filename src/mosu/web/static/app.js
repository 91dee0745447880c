// mosu dashboard: charts (uPlot), the GPU heatmap (canvas), log tails, and live
// refreshes that follow the event stream. Pages are server-rendered; this file only
// draws what a page embeds as JSON and asks htmx to re-read the page body.
(function () {
  "use strict";
  const prefix = document.body.dataset.prefix || "/ui";
  const plots = new Map();

  // ------------------------------------------------------------------ charts

  function number(v) {
    if (v == null) return "—";
    return Math.abs(v) >= 100 ? v.toFixed(0) : String(Math.round(v * 100) / 100);
  }

  function drawChart(el) {
    const source = document.getElementById(el.dataset.chart);
    if (!source) return;
    const data = JSON.parse(source.textContent);
    const old = plots.get(el);
    if (old) old.destroy();
    el.textContent = "";
    const x = data.x;
    const raw = data.series.map((s) => s.values);
    let shown = raw;
    if (data.stack) {
      let acc = x.map(() => 0);
      shown = raw.map((vals) => (acc = acc.map((a, i) => a + (vals[i] || 0))));
    }
    // Stacked areas are drawn from the top of the stack down, each filled to zero, so
    // every band shows; the legend and the cursor report each series' own value.
    const order = data.series.map((_, i) => i);
    if (data.stack) order.reverse();
    const bars = data.bars ? uPlot.paths.bars({ size: [0.7, 60] }) : undefined;
    const series = [{ label: "time" }];
    const columns = [x];
    for (const i of order) {
      const s = data.series[i];
      series.push({
        label: s.label,
        stroke: s.color,
        fill: data.stack || data.bars ? s.color : undefined,
        width: data.stack ? 0.5 : 1.5,
        paths: bars,
        points: { show: false },
        value: (u, v, si, idx) => (idx == null ? "—" : number(raw[i][idx])),
      });
      columns.push(shown[i]);
    }
    for (const line of data.lines) {
      series.push({
        label: `${line.label} (${number(line.value)})`,
        stroke: line.label.startsWith("capacity") ? "#5b6370" : "#b83a3a",
        dash: [6, 4],
        width: 1.5,
        points: { show: false },
        value: () => number(line.value),
      });
      columns.push(x.map(() => line.value));
    }
    const width = Math.max(320, el.clientWidth || 600);
    const plot = new uPlot(
      {
        width: width,
        height: 230,
        series: series,
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max) * 1.05] } },
        axes: [{}, { label: data.unit, size: 56 }],
        legend: { live: true },
        cursor: { points: { show: false } },
      },
      columns,
      el,
    );
    plots.set(el, plot);
  }

  // ------------------------------------------------------------------ heatmap

  const GAP = 1, TILE_GAP = 5, FREE = "#dfe4ea";

  function drawHeatmap(canvas) {
    const data = JSON.parse(document.getElementById(canvas.dataset.heatmap).textContent);
    // nodes: [name, type, gpus, state, rack]; each node gets its GPUs' holders back.
    const nodes = data.nodes.map((n) => [n[0], n[1], n[3], n[4], Array.from({ length: n[2] }, () => [])]);
    const h = data.holders;
    for (let i = 0; i < h.length; i += 5) nodes[h[i]][4][h[i + 1]].push([h[i + 2], h[i + 3], h[i + 4]]);
    // Larger cells while few nodes fill the width; a thousand nodes still fit a screen.
    const CELL_W = nodes.length > 400 ? 7 : nodes.length > 120 ? 10 : 14;
    const CELL_H = CELL_W * 2;
    const perNode = nodes.reduce((m, n) => Math.max(m, n[4].length), 1);
    const tileW = perNode * (CELL_W + GAP) + TILE_GAP;
    const tileH = CELL_H + TILE_GAP;
    const width = canvas.parentElement.clientWidth - 20;
    const cols = Math.max(1, Math.floor(width / tileW));
    const rows = Math.ceil(nodes.length / cols);
    const dpr = window.devicePixelRatio || 1;
    canvas.style.height = rows * tileH + "px";
    canvas.width = Math.floor(width * dpr);
    canvas.height = Math.floor(rows * tileH * dpr);
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    nodes.forEach((n, i) => {
      const x0 = (i % cols) * tileW, y0 = Math.floor(i / cols) * tileH;
      const state = n[2];
      n[4].forEach((holders, g) => {
        const x = x0 + g * (CELL_W + GAP);
        ctx.fillStyle = state === "down" ? "#5b6370" : FREE;
        ctx.fillRect(x, y0, CELL_W, CELL_H);
        let used = 0;
        for (const [t, milli] of holders) {
          const h = (CELL_H * milli) / 1000;
          ctx.fillStyle = data.colors[t];
          ctx.fillRect(x, y0 + CELL_H - used - h, CELL_W, h);
          used += h;
        }
      });
      if (state === "draining") {
        ctx.strokeStyle = "#e0a030";
        ctx.lineWidth = 1.5;
        ctx.strokeRect(x0 - 1, y0 - 1, n[4].length * (CELL_W + GAP) + 1, CELL_H + 2);
      }
    });
    canvas.onmousemove = (ev) => {
      const tip = canvas.parentElement.querySelector(".tip");
      const rect = canvas.getBoundingClientRect();
      const mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
      const i = Math.floor(my / tileH) * cols + Math.floor(mx / tileW);
      const g = Math.floor((mx % tileW) / (CELL_W + GAP));
      const n = nodes[i];
      if (!n || g >= n[4].length || mx % tileW > perNode * (CELL_W + GAP)) {
        tip.hidden = true;
        return;
      }
      const holders = n[4][g].map(([t, milli, job]) =>
        `${data.tenants[t]}  job ${job}${milli < 1000 ? `  (${milli / 1000} GPU)` : ""}`);
      tip.textContent = `${n[0]}  ${n[1]}  ${n[3]}  ${n[2]}\nGPU ${g}: ${holders.join("\n        ") || "free"}`;
      tip.style.left = mx + 16 + "px";
      tip.style.top = my + 16 + "px";
      tip.hidden = false;
    };
    canvas.onmouseleave = () => {
      canvas.parentElement.querySelector(".tip").hidden = true;
    };
    canvas.onclick = (ev) => {
      const rect = canvas.getBoundingClientRect();
      const i = Math.floor((ev.clientY - rect.top) / tileH) * cols +
        Math.floor((ev.clientX - rect.left) / tileW);
      if (nodes[i]) window.location.href = `${prefix}/nodes/${encodeURIComponent(nodes[i][0])}`;
    };
  }

  function drawAll(root) {
    for (const [el, plot] of plots) {
      if (!el.isConnected) {
        plot.destroy();
        plots.delete(el);
      }
    }
    root.querySelectorAll("[data-chart]").forEach(drawChart);
    root.querySelectorAll("canvas[data-heatmap]").forEach(drawHeatmap);
    startLogs(root);
    // The page's last chart is drawn: the benchmark and the tests wait for this mark.
    window.mosuChartsDrawn = performance.now();
    document.dispatchEvent(new CustomEvent("mosu:drawn"));
  }

  // ------------------------------------------------------------------ log tails

  function startLogs(root) {
    root.querySelectorAll("pre[data-log]").forEach((pre) => {
      if (pre.dataset.started) return;
      pre.dataset.started = "1";
      let offset = -1;
      let finished = pre.dataset.finished === "1";
      const tick = async () => {
        try {
          const r = await fetch(`${pre.dataset.log}&offset=${offset}`, {
            headers: { Accept: "application/json" },
          });
          if (!r.ok) return;
          const chunk = await r.json();
          if (chunk.data) {
            const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
            pre.append(chunk.data);
            if (atBottom) pre.scrollTop = pre.scrollHeight;
          }
          offset = chunk.next_offset;
          finished = chunk.finished;
          if (finished && !chunk.data) return;
        } catch (e) {
          /* the server is restarting: try again */
        }
        setTimeout(tick, finished ? 5000 : 1000);
      };
      tick();
    });
  }

  // ------------------------------------------------------------------ live

  // Every kind the event history records; each one re-reads the page body.
  const KINDS = ["state", "stop-requested", "checkpoint-requested", "checkpointed",
    "checkpoint-missed", "tenant-created", "tenant-changed", "quota-changed",
    "node-registered", "node-updated", "node-draining", "node-ready", "node-down", "message"];
  let last = 0, timer = null;

  function changed() {
    if (timer) return;
    // At most one refresh per second and a half, the first within 0.2 s of a change.
    const wait = Math.max(200, last + 1500 - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      if (window.htmx) htmx.trigger(document.body, "mosu:changed");
    }, wait);
  }

  function follow() {
    if (!document.body.dataset.live || !window.EventSource) return;
    const dot = document.getElementById("live");
    const source = new EventSource(`${prefix}/events/stream`);
    source.onopen = () => dot && dot.classList.add("on");
    source.onerror = () => dot && dot.classList.remove("on");
    for (const kind of KINDS) source.addEventListener(kind, changed);
  }

  document.addEventListener("submit", (ev) => {
    const message = ev.target.dataset && ev.target.dataset.confirm;
    if (message && !window.confirm(message)) ev.preventDefault();
  });
  document.addEventListener("htmx:afterSettle", (ev) => drawAll(ev.detail.elt || document));
  document.addEventListener("DOMContentLoaded", () => {
    drawAll(document);
    follow();
  });
})();
