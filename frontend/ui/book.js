// Order book ladder and cumulative depth chart.
//
// Input is the contract's book shape: {bids: [[price, quantity], ...] best first,
// asks: [...] best first}, decimal strings. Cumulative sums are exact (BigInt lots);
// bar widths and chart coordinates are floats.

import { fixed, fromSteps, toSteps } from "./decimal.js";

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Levels with exact cumulative quantity: [{price, qty, lots, cum}] best first. */
export function cumulate(levels, spec) {
  let cum = 0n;
  const out = [];
  for (const [price, qty] of levels) {
    const lots = toSteps(qty, spec.lot_size) ?? 0n;
    cum += lots;
    out.push({ price, qty, lots, cum });
  }
  return out;
}

/**
 * Render one side of the ladder into `el`.
 * `side` is "bids" or "asks"; asks are drawn worst-first so the best ask sits
 * next to the spread row. `prev` maps price -> quantity from the last render,
 * to flash levels that changed. `mine` is a Set of prices where this browser
 * has open orders on that side.
 */
export function renderSide(el, side, levels, spec, maxCum, prev, mine) {
  const rows = cumulate(levels, spec);
  const maxLevel = rows.reduce((m, r) => (r.lots > m ? r.lots : m), 1n);
  const html = [];
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    const cumPct = maxCum > 0n ? Number((r.cum * 10000n) / maxCum) / 100 : 0;
    const lvlPct = Number((r.lots * 10000n) / maxLevel) / 100 * 0.35;
    const price = fixed(r.price, spec.priceDecimals);
    const qty = fixed(r.qty, spec.qtyDecimals);
    const classes = ["book-row"];
    if (i === 0) classes.push("best");
    if (prev && prev.get(price) !== qty) classes.push("changed");
    if (mine && mine.has(price)) classes.push("mine");
    html.push(
      `<div class="${classes.join(" ")}" data-price="${esc(price)}" data-qty="${esc(qty)}" data-side="${side}">` +
        `<div class="bar" style="width:${cumPct}%"></div>` +
        `<div class="bar level" style="width:${lvlPct}%"></div>` +
        `<span class="price">${esc(price)}</span>` +
        `<span class="qty">${esc(qty)}</span>` +
        `<span class="cum">${esc(fromSteps(r.cum, spec.lot_size))}</span>` +
        `</div>`,
    );
  }
  if (side === "asks") html.reverse();
  if (!rows.length) html.push(`<div class="book-empty">no ${side}</div>`);
  el.innerHTML = html.join("");
  const seen = new Map();
  for (const r of rows) seen.set(fixed(r.price, spec.priceDecimals), fixed(r.qty, spec.qtyDecimals));
  return seen;
}

/** Total lots on the deeper of the two sides within the first `n` levels. */
export function maxCumulative(book, spec, n) {
  const sum = (levels) => levels.slice(0, n).reduce((s, [, q]) => s + (toSteps(q, spec.lot_size) ?? 0n), 0n);
  const a = sum(book.asks);
  const b = sum(book.bids);
  return a > b ? a : b;
}

/** Draw the cumulative depth chart of `book` onto `canvas`. */
export function drawDepth(canvas, book, spec, colors) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "10px ui-monospace, 'DejaVu Sans Mono', monospace";

  const bids = cumulate(book.bids, spec).map((r) => [Number(r.price), Number(r.cum)]);
  const asks = cumulate(book.asks, spec).map((r) => [Number(r.price), Number(r.cum)]);
  if (!bids.length && !asks.length) {
    ctx.fillStyle = colors.muted;
    ctx.textAlign = "center";
    ctx.fillText("empty book", w / 2, h / 2);
    return;
  }
  const pad = { l: 8, r: 56, t: 8, b: 18 };
  const cw = w - pad.l - pad.r;
  const ch = h - pad.t - pad.b;
  const bestBid = bids.length ? bids[0][0] : null;
  const bestAsk = asks.length ? asks[0][0] : null;
  const mid = bestBid !== null && bestAsk !== null ? (bestBid + bestAsk) / 2 : bestBid ?? bestAsk;
  // Show every level within 5% of the mid; a stray order far away (a bid at a
  // tenth of the price) would otherwise squash the interesting part to a line.
  const near = [...bids, ...asks].map(([p]) => Math.abs(p - mid)).filter((d) => d <= mid * 0.05);
  let half = near.length ? Math.max(...near) * 1.05 : 0;
  if (!(half > 0)) half = Math.max(mid * 0.001, Number(spec.tick_size) * 10);
  const x0 = mid - half;
  const x1 = mid + half;
  const unit = Number(spec.lot_size);
  const inRange = (points) => points.filter(([p]) => Math.abs(p - mid) <= half);
  const top = (points) => (points.length ? points[points.length - 1][1] : 0);
  const yMax = Math.max(top(inRange(bids)), top(inRange(asks))) * 1.12 || 1;
  const X = (p) => pad.l + ((p - x0) / (x1 - x0)) * cw;
  const Y = (c) => pad.t + ch - (c / yMax) * ch;

  // grid
  ctx.strokeStyle = colors.grid;
  ctx.lineWidth = 1;
  ctx.fillStyle = colors.muted;
  ctx.textAlign = "left";
  for (let i = 0; i <= 3; i++) {
    const c = (yMax / 1.12) * (i / 3);
    const y = Math.round(Y(c)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(pad.l, y);
    ctx.lineTo(pad.l + cw, y);
    ctx.stroke();
    ctx.fillText(formatCompact(c * unit), pad.l + cw + 4, y + 3);
  }
  ctx.textAlign = "center";
  for (let i = 0; i <= 4; i++) {
    const p = x0 + ((x1 - x0) * i) / 4;
    ctx.fillText(p.toFixed(spec.priceDecimals), Math.min(Math.max(X(p), 30), pad.l + cw - 30), h - 5);
  }

  const area = (points, stroke, fill, dir) => {
    if (!points.length) return;
    ctx.beginPath();
    ctx.moveTo(X(points[0][0]), Y(0));
    let prevY = Y(0);
    for (const [p, c] of points) {
      const x = X(p);
      ctx.lineTo(x, prevY);
      prevY = Y(c);
      ctx.lineTo(x, prevY);
    }
    const edge = dir < 0 ? pad.l : pad.l + cw;
    ctx.lineTo(edge, prevY);
    ctx.strokeStyle = stroke;
    ctx.lineWidth = 1.5;
    ctx.stroke();
    ctx.lineTo(edge, Y(0));
    ctx.closePath();
    ctx.fillStyle = fill;
    ctx.fill();
  };
  ctx.save();
  ctx.beginPath();
  ctx.rect(pad.l, pad.t - 2, cw, ch + 2);
  ctx.clip();
  area(bids, colors.up, colors.upFill, -1);
  area(asks, colors.down, colors.downFill, 1);
  ctx.restore();

  ctx.setLineDash([3, 3]);
  ctx.strokeStyle = colors.muted;
  ctx.beginPath();
  ctx.moveTo(Math.round(X(mid)) + 0.5, pad.t);
  ctx.lineTo(Math.round(X(mid)) + 0.5, pad.t + ch);
  ctx.stroke();
  ctx.setLineDash([]);
}

function formatCompact(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(2) + "K";
  if (v >= 100) return v.toFixed(0);
  if (v >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}
