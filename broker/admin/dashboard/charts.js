// The dashboard's drawing: a line chart on a canvas, and how numbers are written. Our own
// small code rather than a chart library: the broker serves every byte of the page from its
// binary, and nothing here is anyone else's.

// Series colours, in the order series first appear; chosen to stay apart for the colour-blind.
const PALETTE = ["#1f77b4", "#e8710a", "#2ca02c", "#9467bd", "#d62728", "#17becf", "#8c564b", "#bcbd22"];
const FONT = "12px system-ui, sans-serif";
const AXIS = "#6b7280";
const GRID = "#e5e7eb";
// The time axis spans at least this long, and is marked every one of these seconds (the first
// that makes at most six marks).
const MIN_SPAN_MS = 60 * 1000;
const TIME_STEPS_S = [10, 15, 30, 60, 120, 300, 600];

// A line chart of values over the last `windowMs` milliseconds, one line per series; series
// come and go by name (an endpoint, a shard), and one without a point in the window is dropped.
export class LineChart {
  constructor(canvas, { windowMs, format }) {
    this.canvas = canvas;
    this.windowMs = windowMs;
    this.format = format;
    this.series = new Map(); // name -> {color, points: [[t, value]]}
    this.colors = 0;
  }

  // Adds one point per named series at time `t` (ms); a null value leaves a gap.
  push(t, values) {
    for (const [name, value] of Object.entries(values)) {
      let series = this.series.get(name);
      if (!series) {
        series = { color: PALETTE[this.colors++ % PALETTE.length], points: [] };
        this.series.set(name, series);
      }
      series.points.push([t, value]);
    }
    for (const [name, series] of this.series) {
      while (series.points.length && series.points[0][0] < t - this.windowMs) series.points.shift();
      if (!series.points.length) this.series.delete(name);
    }
  }

  clear() {
    this.series.clear();
    this.colors = 0;
    this.draw(Date.now());
  }

  draw(now) {
    const ctx = this.context();
    if (!ctx) return;
    const { width, height } = this.size;
    ctx.clearRect(0, 0, width, height);
    ctx.font = FONT;
    let max = 0;
    for (const series of this.series.values()) {
      for (const [, v] of series.points) if (v !== null && v > max) max = v;
    }
    const { top, step } = scale(max);
    const ticks = Math.round(top / step);
    const labels = Array.from({ length: ticks + 1 }, (_, i) => this.format(i * step));
    const left = 8 + Math.max(...labels.map((l) => ctx.measureText(l).width));
    const legend = 20, bottom = 18, right = 8;
    const plot = { x: left + 6, y: legend + 4, w: width - left - 6 - right, h: height - legend - 4 - bottom };
    if (plot.w < 20 || plot.h < 20) return;
    // The time axis spans the points there are (at least MIN_SPAN_MS), up to the window: a
    // chart opened a moment ago is not a sliver at its right edge.
    let oldest = now;
    for (const series of this.series.values()) oldest = Math.min(oldest, series.points[0][0]);
    const span = Math.min(this.windowMs, Math.max(MIN_SPAN_MS, now - oldest));
    const x = (t) => plot.x + plot.w * (1 - (now - t) / span);
    const y = (v) => plot.y + plot.h * (1 - v / top);

    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    ctx.lineWidth = 1;
    labels.forEach((label, i) => {
      const at = Math.round(y(i * step)) + 0.5;
      ctx.strokeStyle = GRID;
      ctx.beginPath();
      ctx.moveTo(plot.x, at);
      ctx.lineTo(plot.x + plot.w, at);
      ctx.stroke();
      ctx.fillStyle = AXIS;
      ctx.fillText(label, left, at);
    });
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const stepS = TIME_STEPS_S.find((step) => span / 1000 / step <= 6) ?? TIME_STEPS_S[TIME_STEPS_S.length - 1];
    // From "now" back, each mark kept inside the plot and dropped where it would overlap the
    // one drawn before it.
    let free = plot.x + plot.w;
    for (let back = 0; back * 1000 <= span; back += stepS) {
      const label = back === 0 ? "now" : `−${formatDuration(back)}`;
      const half = ctx.measureText(label).width / 2;
      const at = Math.min(plot.x + plot.w - half, Math.max(plot.x + half, x(now - back * 1000)));
      if (at + half > free) continue;
      ctx.fillText(label, at, plot.y + plot.h + 4);
      free = at - half - 8;
    }

    ctx.lineWidth = 1.75;
    ctx.lineJoin = "round";
    for (const series of this.series.values()) {
      ctx.strokeStyle = series.color;
      ctx.beginPath();
      let drawing = false;
      for (const [t, v] of series.points) {
        if (v === null) {
          drawing = false;
          continue;
        }
        if (drawing) ctx.lineTo(x(t), y(v));
        else ctx.moveTo(x(t), y(v));
        drawing = true;
      }
      ctx.stroke();
    }
    this.drawLegend(ctx, plot.x, width - right);
    if (!this.series.size) {
      ctx.fillStyle = AXIS;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("waiting for data", plot.x + plot.w / 2, plot.y + plot.h / 2);
    }
  }

  // Each series' colour, name and latest value, in a row above the plot, as many as fit.
  drawLegend(ctx, from, to) {
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    let at = from;
    for (const [name, series] of this.series) {
      const last = series.points[series.points.length - 1][1];
      const text = `${name} ${last === null ? "–" : this.format(last)}`;
      const width = 14 + ctx.measureText(text).width;
      if (at + width > to) break;
      ctx.fillStyle = series.color;
      ctx.fillRect(at, 6, 10, 10);
      ctx.fillStyle = "#111827";
      ctx.fillText(text, at + 14, 11);
      at += width + 14;
    }
  }

  // The 2D context, the canvas's backing store sized to its box on screen in device pixels
  // (so that lines stay sharp on high-density screens); null while the canvas is not shown.
  context() {
    const box = this.canvas.getBoundingClientRect();
    if (!box.width || !box.height) return null;
    const ratio = window.devicePixelRatio || 1;
    const w = Math.round(box.width * ratio), h = Math.round(box.height * ratio);
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.size = { width: box.width, height: box.height };
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }
}

// The axis top at or above `max`, and its step: 1, 2 or 5 times a power of ten, 3 to 5 steps.
function scale(max) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return { top: Math.ceil(max / step) * step, step };
}

// 1234 -> "1.2k", 5600000 -> "5.6M"; small numbers as they are (rates with one decimal).
export function formatCount(value) {
  const abs = Math.abs(value);
  for (const [limit, suffix] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (abs >= limit) return `${trim(value / limit)}${suffix}`;
  }
  return Number.isInteger(value) ? String(value) : trim(value);
}

export function formatBytes(value) {
  const abs = Math.abs(value);
  for (const [limit, suffix] of [[2 ** 40, "TiB"], [2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]]) {
    if (abs >= limit) return `${trim(value / limit)} ${suffix}`;
  }
  return `${Math.round(value)} B`;
}

export function formatPercent(value) {
  return `${trim(value)}%`;
}

// 75 -> "1 min 15 s", 90000 -> "1 d 1 h": the largest unit and the next.
export function formatDuration(seconds) {
  const units = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];
  let rest = Math.max(0, Math.floor(seconds));
  const first = units.findIndex(([, size]) => rest >= size);
  if (first < 0) return "0 s";
  const parts = [];
  for (const [unit, size] of units.slice(first, first + 2)) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n) parts.push(`${n} ${unit}`);
  }
  return parts.join(" ");
}

function trim(value) {
  return value.toFixed(Math.abs(value) >= 100 ? 0 : 1).replace(/\.0$/, "");
}
