// MatchBook trading page: wiring of REST snapshots, the Socket.IO `/market`
// stream and the panels.
//
// Freshness rules:
// - Every book/BBO message carries the symbol's `sequence`; a message older
//   than what is shown is ignored, so a late REST snapshot can never overwrite
//   a newer stream update (and vice versa).
// - On every (re)connect the page forgets the sequence it had, subscribes again
//   and re-fetches GET /book, /bbo and /trades; until then the book is greyed
//   out as possibly stale.
// - Only the serving host is ever contacted: relative REST paths and io("/market").
// - Two Socket.IO connections: this file's public one (l2_updates, bbo, trades;
//   never a key) and the session's private one (account.js: the account's
//   order_events and balances, with the API key). Open orders, history, fills and
//   balances come from the server (orders.js, funds.js), never from the browser's
//   memory.

import { api } from "./api.js";
import { cumulate, drawDepth, maxCumulative, renderSide } from "./book.js";
import { PriceChart, parseTime } from "./chart.js";
import { compare, decimalsOf, fixed, fromSteps, group, toSteps } from "./decimal.js";
import { Session } from "./account.js";
import { AmendForm, EventFeed } from "./amend.js";
import { OrderEntry } from "./entry.js";
import { BalancesPanel } from "./funds.js";
import { AccountOrders } from "./orders.js";

const DEPTH = 25; // levels subscribed and fetched per side (book ladder + depth chart)
const TRADE_HISTORY = 500; // trades fetched to seed the tape, chart and statistics
const TAPE_ROWS = 80;
const MAX_TRADES = 5000;
const HEALTH_EVERY_MS = 2000;
const STATISTICS_EVERY_MS = 3000;

const $ = (id) => document.getElementById(id);
const css = getComputedStyle(document.documentElement);
const color = (name) => css.getPropertyValue(name).trim();
const COLORS = {
  panel: color("--panel"),
  grid: "rgba(43, 49, 57, 0.55)",
  line: color("--line"),
  muted: color("--muted"),
  up: color("--up"),
  down: color("--down"),
  upFill: "rgba(14, 203, 129, 0.18)",
  downFill: "rgba(246, 70, 93, 0.18)",
  upVol: "rgba(14, 203, 129, 0.35)",
  downVol: "rgba(246, 70, 93, 0.35)",
};

const state = {
  specs: {},
  symbol: null,
  book: { sequence: -1, bids: [], asks: [] },
  bbo: { sequence: -1, best_bid: null, best_ask: null, spread: null },
  trades: [], // current symbol, oldest first
  tradeIds: new Set(),
  liveSinceSnapshot: null, // trades that arrived while a snapshot was in flight
  snapshotGen: 0,
  snapshots: 0,
  tab: "open",
  prevLevels: { bids: null, asks: null },
  tapeIds: new Set(),
  // Per symbol, from GET /statistics: {trades, lots, liveTrades, liveLots}; the
  // live counts add trades streamed since that answer, until the next one.
  serverStats: {},
  scales: {}, // asset -> decimals, from GET /assets (public)
  balances: null, // the account's last GET /account or `balance` payload (null: none)
};

const my = new AccountOrders();
const session = new Session(my, () => {
  my.dirty = true;
  scheduleRender();
});
const chart = new PriceChart($("price-chart"), COLORS);
const entry = new OrderEntry(submitOrder);
// What happens to the account's orders (triggered, amended, filled, cancelled and
// why), as the session's private order_events bring it (in both auth modes).
const feed = new EventFeed((orderId) => my.isMine(orderId));
session.onEvent = (msg) => feed.add(msg);
const balancesPanel = new BalancesPanel();
session.onBalances = (account, source) => {
  state.balances = account;
  renderBalances(source);
  entry.updateCost();
};
entry.funds = () => {
  const { bid, ask } = bestPrices();
  const available = state.balances && state.balances.balances && state.balances.balances.length
    ? Object.fromEntries(state.balances.balances.map((b) => [b.asset, b.available]))
    : null;
  return { available, scales: state.scales, bestBid: bid ? bid.price : null, bestAsk: ask ? ask.price : null };
};
my.amendable = true;
let socket = null;

// ---------------------------------------------------------------- rendering

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  const run = () => {
    renderQueued = false;
    render();
  };
  if (document.hidden) setTimeout(run, 250);
  else requestAnimationFrame(run);
}

function currentSpec() {
  return state.specs[state.symbol];
}

function renderBalances(source) {
  const spec = currentSpec();
  balancesPanel.render(state.balances, spec ? [spec.base, spec.quote] : [], source);
}

/** Best bid/ask from whichever of book and BBO is newer. */
function bestPrices() {
  const { book, bbo } = state;
  if (book.sequence > bbo.sequence) {
    const bid = book.bids[0] ? { price: book.bids[0][0], quantity: book.bids[0][1] } : null;
    const ask = book.asks[0] ? { price: book.asks[0][0], quantity: book.asks[0][1] } : null;
    return { bid, ask, sequence: book.sequence };
  }
  return { bid: bbo.best_bid, ask: bbo.best_ask, sequence: bbo.sequence };
}

function render() {
  const spec = currentSpec();
  if (!spec) return;
  chart.flush(state.trades);
  renderBook(spec);
  renderStats(spec);
  renderTape(spec);
  entry.updateCost(); // a market order's estimate follows the best prices
  if (my.dirty) my.render(state.tab, state.specs, session.notice());
}

function renderBook(spec) {
  const { book } = state;
  const maxCum = maxCumulative(book, spec, DEPTH);
  const mine = (side) =>
    new Set(
      my
        .open()
        .filter((o) => o.symbol === spec.symbol && o.side === side && o.price)
        .map((o) => fixed(o.price, spec.priceDecimals)),
    );
  state.prevLevels.asks = renderSide($("book-asks"), "asks", book.asks, spec, maxCum, state.prevLevels.asks, mine("sell"));
  state.prevLevels.bids = renderSide($("book-bids"), "bids", book.bids, spec, maxCum, state.prevLevels.bids, mine("buy"));
  $("book").dataset.sequence = String(book.sequence);
  $("book-seq").textContent = book.sequence >= 0 ? `seq ${book.sequence}` : "seq —";

  const { bid, ask } = bestPrices();
  const last = state.trades[state.trades.length - 1];
  const prev = state.trades[state.trades.length - 2];
  const lastEl = $("book-last");
  if (last) {
    const dir = prev ? compare(last.price, prev.price) : 0;
    lastEl.textContent = `${fixed(last.price, spec.priceDecimals)} ${dir > 0 ? "↑" : dir < 0 ? "↓" : ""}`.trim();
    lastEl.className = `mid-last ${last.aggressor_side === "buy" ? "up" : "down"}`;
  } else {
    lastEl.textContent = "—";
    lastEl.className = "mid-last";
  }
  $("book-spread").textContent = bid && ask ? `spread ${spreadText(spec, bid.price, ask.price)}` : "";
  drawDepth($("depth-chart"), book, spec, COLORS);
  const bidTotal = cumulate(book.bids, spec).pop();
  const askTotal = cumulate(book.asks, spec).pop();
  $("depth-info").textContent =
    `bids ${bidTotal ? fromSteps(bidTotal.cum, spec.lot_size) : "0"} · asks ${askTotal ? fromSteps(askTotal.cum, spec.lot_size) : "0"} ${spec.base} (top ${DEPTH})`;
}

function spreadText(spec, bidPrice, askPrice) {
  const b = toSteps(bidPrice, spec.tick_size);
  const a = toSteps(askPrice, spec.tick_size);
  if (a === null || b === null) return "";
  const spread = fromSteps(a - b, spec.tick_size);
  const mid = (Number(bidPrice) + Number(askPrice)) / 2;
  const bps = mid > 0 ? ((Number(spread) / mid) * 1e4).toFixed(2) : "—";
  return `${spread} (${bps} bps)`;
}

function renderStats(spec) {
  const { bid, ask } = bestPrices();
  const trades = state.trades;
  const last = trades[trades.length - 1];
  const lastEl = $("stat-last");
  lastEl.textContent = last ? group(fixed(last.price, spec.priceDecimals)) : "—";
  lastEl.dataset.value = last ? fixed(last.price, spec.priceDecimals) : "";
  lastEl.className = `last ${last ? (last.aggressor_side === "buy" ? "up" : "down") : ""}`;
  const first = trades[0];
  const change = $("stat-change");
  if (first && last && Number(first.price) > 0) {
    const pct = ((Number(last.price) - Number(first.price)) / Number(first.price)) * 100;
    change.textContent = `${pct >= 0 ? "+" : ""}${pct.toFixed(2)}% since ${new Date(parseTime(first.timestamp)).toLocaleTimeString([], { hour12: false })}`;
    change.className = `sub ${pct >= 0 ? "up" : "down"}`;
  } else {
    change.textContent = "no trades yet";
    change.className = "sub";
  }
  const setStat = (id, value, raw) => {
    $(id).textContent = value;
    $(id).dataset.value = raw ?? "";
  };
  setStat("stat-bid", bid ? `${group(fixed(bid.price, spec.priceDecimals))}` : "—", bid ? fixed(bid.price, spec.priceDecimals) : "");
  setStat("stat-ask", ask ? `${group(fixed(ask.price, spec.priceDecimals))}` : "—", ask ? fixed(ask.price, spec.priceDecimals) : "");
  $("stat-bid").title = bid ? `${fixed(bid.quantity, spec.qtyDecimals)} ${spec.base}` : "";
  $("stat-ask").title = ask ? `${fixed(ask.quantity, spec.qtyDecimals)} ${spec.base}` : "";
  setStat("stat-spread", bid && ask ? spreadText(spec, bid.price, ask.price) : "—");

  let volume = 0n;
  let count = trades.length;
  let high = null;
  let low = null;
  for (const t of trades) {
    volume += toSteps(t.quantity, spec.lot_size) ?? 0n;
    if (high === null || compare(t.price, high) > 0) high = t.price;
    if (low === null || compare(t.price, low) < 0) low = t.price;
  }
  // The server's session counters when it reports them; else what the page has seen.
  const server = state.serverStats[spec.symbol];
  if (server) {
    volume = server.lots + server.liveLots;
    count = server.trades + server.liveTrades;
  }
  setStat("stat-volume", group(fromSteps(volume, spec.lot_size)), fromSteps(volume, spec.lot_size));
  $("stat-volume-unit").textContent = `(${spec.base})`;
  setStat("stat-trades", String(count), String(count));
  $("stat-range").textContent = high ? `${group(fixed(high, spec.priceDecimals))} / ${group(fixed(low, spec.priceDecimals))}` : "—";
  document.title = last ? `${fixed(last.price, spec.priceDecimals)} · ${spec.symbol} · MatchBook` : `${spec.symbol} · MatchBook`;
}

function renderTape(spec) {
  const rows = [];
  const seen = new Set();
  const firstRender = state.tapeIds.size === 0;
  for (let i = state.trades.length - 1; i >= 0 && rows.length < TAPE_ROWS; i--) {
    const t = state.trades[i];
    seen.add(t.trade_id);
    const side = t.aggressor_side === "buy" ? "up" : "down";
    const fresh = !firstRender && !state.tapeIds.has(t.trade_id) ? " new" : "";
    const time = new Date(parseTime(t.timestamp)).toLocaleTimeString([], { hour12: false });
    rows.push(
      `<div class="tape-row${fresh}" data-trade-id="${escapeAttr(t.trade_id)}" data-price="${escapeAttr(fixed(t.price, spec.priceDecimals))}" ` +
        `data-qty="${escapeAttr(fixed(t.quantity, spec.qtyDecimals))}" data-side="${t.aggressor_side === "buy" ? "buy" : "sell"}">` +
        `<span class="${side}">${escapeAttr(fixed(t.price, spec.priceDecimals))}</span>` +
        `<span>${escapeAttr(fixed(t.quantity, spec.qtyDecimals))}</span>` +
        `<span class="time">${time}</span></div>`,
    );
  }
  state.tapeIds = seen;
  $("tape").innerHTML = rows.length ? rows.join("") : `<div class="book-empty">no trades yet</div>`;
}

function escapeAttr(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// ---------------------------------------------------------------- market data

function applyBook(msg) {
  if (!msg || msg.symbol !== state.symbol) return;
  if (typeof msg.sequence === "number" && msg.sequence < state.book.sequence) return;
  state.book = { sequence: msg.sequence, bids: msg.bids || [], asks: msg.asks || [] };
  scheduleRender();
}

function applyBbo(msg) {
  if (!msg || msg.symbol !== state.symbol) return;
  if (typeof msg.sequence === "number" && msg.sequence < state.bbo.sequence) return;
  state.bbo = msg;
  scheduleRender();
}

function onTrade(trade) {
  const server = state.serverStats[trade.symbol];
  if (server) {
    server.liveTrades += 1;
    server.liveLots += toSteps(trade.quantity, state.specs[trade.symbol].lot_size) ?? 0n;
  }
  if (trade.symbol !== state.symbol || state.tradeIds.has(trade.trade_id)) return;
  if (state.liveSinceSnapshot) state.liveSinceSnapshot.push(trade);
  state.tradeIds.add(trade.trade_id);
  state.trades.push(trade);
  if (state.trades.length > MAX_TRADES) {
    for (const t of state.trades.splice(0, state.trades.length - MAX_TRADES)) state.tradeIds.delete(t.trade_id);
  }
  chart.addTrade(trade);
  scheduleRender();
}

/** Fetch book, BBO and trade history for the current symbol (after connect or a switch). */
async function loadSnapshots() {
  const symbol = state.symbol;
  const gen = ++state.snapshotGen;
  state.liveSinceSnapshot = [];
  const [book, bbo, trades] = await Promise.all([
    api.book(symbol, DEPTH),
    api.bbo(symbol),
    api.trades(symbol, TRADE_HISTORY),
    loadStatistics(),
  ]);
  if (symbol !== state.symbol || gen !== state.snapshotGen) return;
  if (book.ok) applyBook(book.data);
  if (bbo.ok) applyBbo(bbo.data);
  if (trades.ok) {
    // The server's history is the truth; keep only live trades that arrived meanwhile.
    const list = (trades.data.trades || []).slice();
    const ids = new Set(list.map((t) => t.trade_id));
    for (const t of state.liveSinceSnapshot) if (!ids.has(t.trade_id)) list.push(t), ids.add(t.trade_id);
    list.sort((a, b) => parseTime(a.timestamp) - parseTime(b.timestamp));
    state.trades = list;
    state.tradeIds = ids;
    chart.setTrades(list);
  }
  state.liveSinceSnapshot = null;
  if (book.ok && bbo.ok && trades.ok) {
    state.snapshots += 1;
    document.body.dataset.snapshots = String(state.snapshots);
  }
  scheduleRender();
}

// ---------------------------------------------------------------- socket

function emitAck(event, payload) {
  return new Promise((resolve) => {
    if (!socket || !socket.connected) return resolve({ ok: false, error: { message: "not connected" } });
    socket.timeout(5000).emit(event, payload, (err, answer) => {
      if (err) resolve({ ok: false, error: { message: "no acknowledgement" } });
      else if (answer && answer.ok) resolve({ ok: true });
      else resolve({ ok: false, error: (answer && answer.error) || answer });
    });
  });
}

async function subscribeSymbol(symbol) {
  const results = await Promise.all([
    emitAck("subscribe", { type: "l2_updates", symbol, depth: DEPTH }),
    emitAck("subscribe", { type: "bbo", symbol }),
  ]);
  for (const r of results) if (!r.ok) console.warn("subscribe failed", symbol, r.error);
}

function unsubscribeSymbol(symbol) {
  if (!socket || !socket.connected) return;
  socket.emit("unsubscribe", { type: "l2_updates", symbol });
  socket.emit("unsubscribe", { type: "bbo", symbol });
}

function setConn(stateName, text) {
  $("conn-status").dataset.state = stateName;
  document.body.dataset.conn = stateName;
  $("conn-text").textContent = text;
}

function connect() {
  socket = window.io("/market", {
    reconnectionDelay: 500,
    reconnectionDelayMax: 2000,
    timeout: 5000,
  });
  socket.on("connect", async () => {
    setConn("connecting", "Syncing…");
    // A new connection starts a new sequence history as far as the page is
    // concerned: whatever this connection delivers first (the subscription's
    // initial l2_update/bbo or the REST snapshot) replaces what was shown, even
    // if a server that lost its state counts from a lower number again.
    state.book.sequence = -1;
    state.bbo.sequence = -1;
    // All symbols' trades: the tape filters the current symbol, the volume
    // counters need every symbol. The account's order events go over the
    // session's own connection (account.js).
    const results = await Promise.all([
      emitAck("subscribe", { type: "trades" }),
      subscribeSymbol(state.symbol).then(() => ({ ok: true })),
    ]);
    for (const r of results) if (!r.ok) console.warn("subscribe failed", r.error);
    await loadSnapshots();
    if (socket.connected) setConn("connected", `Live · ${socket.io.engine.transport.name}`);
  });
  socket.on("disconnect", (reason) => {
    setConn("disconnected", reason === "io client disconnect" ? "Offline" : "Reconnecting…");
    scheduleRender();
  });
  socket.io.on("reconnect_attempt", (n) => setConn("disconnected", `Reconnecting… (${n})`));
  socket.on("connect_error", () => setConn("disconnected", "Server unreachable, retrying…"));
  socket.on("l2_update", applyBook);
  socket.on("bbo", applyBbo);
  socket.on("trade", onTrade);
}

/** Session volume and trade count per symbol from GET /statistics (free form: read defensively). */
async function loadStatistics() {
  const result = await api.get("/statistics");
  const symbols = result.ok && result.data && result.data.symbols;
  if (!symbols || typeof symbols !== "object") return;
  for (const [symbol, stats] of Object.entries(symbols)) {
    const spec = state.specs[symbol];
    if (!spec || !stats || typeof stats.trades !== "number" || typeof stats.volume !== "string") continue;
    const lots = toSteps(stats.volume, spec.lot_size);
    if (lots === null) continue;
    state.serverStats[symbol] = { trades: stats.trades, lots, liveTrades: 0, liveLots: 0n };
  }
  scheduleRender();
}

async function statisticsLoop() {
  if (socket && socket.connected) await loadStatistics();
  setTimeout(statisticsLoop, STATISTICS_EVERY_MS);
}

async function pingLoop() {
  const el = $("latency");
  const started = performance.now();
  const result = await api.health();
  const ms = performance.now() - started;
  if (result.ok) {
    el.textContent = `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
    el.dataset.ms = ms.toFixed(1);
    el.style.color = ms < 50 ? COLORS.up : ms < 250 ? "" : COLORS.down;
  } else {
    el.textContent = "— ms";
    el.dataset.ms = "";
    el.style.color = "";
  }
  if (socket && socket.connected && $("conn-status").dataset.state === "connected") {
    $("conn-text").textContent = `Live · ${socket.io.engine.transport.name}`;
  }
  setTimeout(pingLoop, HEALTH_EVERY_MS);
}

// ---------------------------------------------------------------- orders

let orderSeq = 0;
const browserTag = Math.random().toString(36).slice(2, 8);

async function submitOrder(order) {
  if (!session.canTrade()) {
    const message = session.mode === "on" ? "Log in with an API key to trade" : "Connecting to the server…";
    return { ok: false, status: 401, data: null, error: { code: "UNAUTHENTICATED", message } };
  }
  const clientOrderId = `web-${browserTag}-${Date.now().toString(36)}-${++orderSeq}`;
  const result = await api.submit({ ...order, client_order_id: clientOrderId });
  if (result.ok) my.apply(result.data);
  session.scheduleRefresh();
  scheduleRender();
  return result;
}

async function cancelOrder(orderId) {
  const result = await api.cancel(orderId);
  if (result.ok) my.apply(result.data);
  else if (result.status === 409) {
    const fresh = await api.order(orderId);
    if (fresh.ok) my.apply(fresh.data);
  }
  session.scheduleRefresh();
  scheduleRender();
  return result;
}

async function amendOrder(body) {
  const result = await api.amend(body);
  if (result.ok) my.apply(result.data);
  session.scheduleRefresh();
  scheduleRender();
  return result;
}

function setupOrdersPanel() {
  for (const btn of document.querySelectorAll(".tabs button")) {
    btn.addEventListener("click", () => {
      state.tab = btn.dataset.tab;
      my.dirty = true;
      for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b === btn);
      scheduleRender();
    });
  }
  $("my-orders").addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-action=cancel]");
    if (!btn) return;
    btn.disabled = true;
    btn.textContent = "…";
    const result = await cancelOrder(btn.dataset.orderId);
    const msg = $("cancel-id-result");
    msg.className = `small ${result.ok ? "ok" : "error"}`;
    msg.textContent = result.ok ? `cancelled ${btn.dataset.orderId}` : result.error.message;
  });
  $("cancel-by-id").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = $("cancel-id-input").value.trim();
    const msg = $("cancel-id-result");
    if (!id) {
      msg.className = "small error";
      msg.textContent = "enter an order id";
      return;
    }
    const result = await cancelOrder(id);
    msg.className = `small ${result.ok ? "ok" : "error"}`;
    msg.textContent = result.ok ? `cancelled ${id}` : result.error.message || result.error.code;
    if (result.ok) $("cancel-id-input").value = "";
  });
  $("cancel-all").addEventListener("click", async () => {
    const msg = $("cancel-id-result");
    if (!session.active()) {
      msg.className = "small error";
      msg.textContent = "log in first";
      return;
    }
    const result = await api.cancelAll();
    const cancelled = (result.ok && result.data.cancelled) || [];
    for (const report of cancelled) my.apply(report);
    msg.className = `small ${result.ok ? "ok" : "error"}`;
    msg.textContent = result.ok
      ? `cancelled ${cancelled.length} order${cancelled.length === 1 ? "" : "s"}`
      : result.error.message || result.error.code;
    session.scheduleRefresh();
    scheduleRender();
  });
}

// ---------------------------------------------------------------- symbols

function selectSymbol(symbol) {
  const previous = state.symbol;
  if (previous === symbol) return;
  if (previous) unsubscribeSymbol(previous);
  state.symbol = symbol;
  state.book = { sequence: -1, bids: [], asks: [] };
  state.bbo = { sequence: -1, best_bid: null, best_ask: null, spread: null };
  state.trades = [];
  state.tradeIds = new Set();
  state.prevLevels = { bids: null, asks: null };
  state.tapeIds = new Set();
  const spec = currentSpec();
  $("symbol-select").value = symbol;
  $("book-price-unit").textContent = `(${spec.quote})`;
  $("book-qty-unit").textContent = `(${spec.base})`;
  localStorage.setItem("matchbook.symbol", symbol);
  if (location.hash.slice(1) !== symbol) history.replaceState(null, "", `#${symbol}`);
  entry.setSpec(spec);
  renderBalances();
  chart.setSpec(spec);
  chart.setTrades([]);
  scheduleRender();
  if (socket && socket.connected) {
    subscribeSymbol(symbol);
    loadSnapshots();
  }
}

async function init() {
  setConn("connecting", "Connecting…");
  let result = await api.symbols();
  while (!result.ok) {
    setConn("disconnected", `Cannot load symbols (${result.error.message}), retrying…`);
    await new Promise((r) => setTimeout(r, 2000));
    result = await api.symbols();
  }
  const select = $("symbol-select");
  for (const s of result.data.symbols) {
    state.specs[s.symbol] = { ...s, priceDecimals: decimalsOf(s.tick_size), qtyDecimals: decimalsOf(s.lot_size) };
    const option = document.createElement("option");
    option.value = s.symbol;
    option.textContent = s.symbol.replace("-", " / ");
    select.appendChild(option);
  }
  const assets = await api.get("/assets");
  if (assets.ok && assets.data && Array.isArray(assets.data.assets)) {
    for (const a of assets.data.assets) state.scales[a.asset] = a.scale;
  }
  const wanted = [decodeURIComponent(location.hash.slice(1)), localStorage.getItem("matchbook.symbol")];
  const first = wanted.find((s) => s && state.specs[s]) || result.data.symbols[0].symbol;
  select.addEventListener("change", () => selectSymbol(select.value));
  window.addEventListener("hashchange", () => {
    const s = decodeURIComponent(location.hash.slice(1));
    if (state.specs[s]) selectSymbol(s);
  });
  selectSymbol(first);

  // mousedown, not click: the rows are rebuilt on every market-data frame, and a
  // click needs the same element under both mousedown and mouseup.
  const pick = (ev) => {
    const row = ev.target.closest("[data-price]");
    if (row && ev.button === 0) entry.setPrice(row.dataset.price);
  };
  $("book-asks").addEventListener("mousedown", pick);
  $("book-bids").addEventListener("mousedown", pick);
  $("tape").addEventListener("mousedown", pick);
  for (const btn of document.querySelectorAll("#intervals button")) {
    btn.addEventListener("click", () => {
      for (const b of document.querySelectorAll("#intervals button")) b.classList.toggle("active", b === btn);
      chart.setInterval(Number(btn.dataset.interval), state.trades);
    });
  }
  new ResizeObserver(() => scheduleRender()).observe($("depth-chart"));
  document.addEventListener("visibilitychange", () => !document.hidden && scheduleRender());
  setupOrdersPanel();
  new AmendForm(amendOrder, (orderId) => my.find(orderId), state.specs);
  connect();
  session.detect();
  pingLoop();
  setTimeout(statisticsLoop, STATISTICS_EVERY_MS);
  document.body.dataset.ready = "true";
}

// For the browser tests and for poking around in the console.
window.__matchbook = { state, my, session };

init();
