// "My orders": the orders placed from this browser, kept in localStorage, with
// their live status (from `order_event`s and REST refreshes) and their fills.
//
// An order is first stored under its client_order_id (status "sending") before
// the POST goes out, because its `order_event`s can arrive before the POST's
// answer; both are matched by client_order_id, then by order_id.

import { compare, fixed } from "./decimal.js";

const ORDERS_KEY = "matchbook.v1.orders";
const FILLS_KEY = "matchbook.v1.fills";
const MAX_ORDERS = 300;
const MAX_FILLS = 500;
const TERMINAL = new Set(["filled", "cancelled", "unknown"]);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export const isOpen = (o) => o.status === "new" || o.status === "partially_filled" || o.status === "pending";

function load(key) {
  try {
    const value = JSON.parse(localStorage.getItem(key) || "[]");
    return Array.isArray(value) ? value : [];
  } catch (err) {
    return [];
  }
}

/** True when `upd` is not older than `cur` (status never goes back, fills never shrink). */
function isNewer(cur, upd) {
  if (TERMINAL.has(cur.status) && !TERMINAL.has(upd.status)) return false;
  if (cur.filled_quantity && upd.filled_quantity && compare(upd.filled_quantity, cur.filled_quantity) < 0) return false;
  return true;
}

export class MyOrders {
  constructor() {
    this.orders = load(ORDERS_KEY).filter((o) => o && o.order_id);
    this.fills = load(FILLS_KEY);
    this.fresh = new Set();
    // The table is rebuilt only when something in it changed: rebuilding it on
    // every market-data frame would swallow clicks on its Cancel buttons.
    this.dirty = true;
  }

  save() {
    this.dirty = true;
    // Keep every open order; trim the oldest finished ones beyond the cap.
    if (this.orders.length > MAX_ORDERS) {
      const excess = this.orders.length - MAX_ORDERS;
      let dropped = 0;
      this.orders = this.orders.filter((o) => isOpen(o) || o.status === "sending" || dropped++ >= excess);
    }
    if (this.fills.length > MAX_FILLS) this.fills = this.fills.slice(-MAX_FILLS);
    try {
      localStorage.setItem(ORDERS_KEY, JSON.stringify(this.orders.filter((o) => o.status !== "sending")));
      localStorage.setItem(FILLS_KEY, JSON.stringify(this.fills));
    } catch (err) {
      // Storage full or disabled: the page still works for this visit.
    }
  }

  find(orderId, clientOrderId) {
    return this.orders.find(
      (o) => (orderId && o.order_id === orderId) || (clientOrderId && o.client_order_id === clientOrderId),
    );
  }

  isMine(orderId) {
    return this.orders.some((o) => o.order_id === orderId);
  }

  addPending(order, clientOrderId) {
    this.orders.push({
      ...order,
      order_id: `pending:${clientOrderId}`,
      client_order_id: clientOrderId,
      price: order.price ?? null,
      filled_quantity: null,
      remaining_quantity: order.quantity,
      average_price: null,
      status: "sending",
      timestamp: new Date().toISOString(),
    });
    this.dirty = true;
  }

  dropPending(clientOrderId) {
    this.orders = this.orders.filter((o) => !(o.status === "sending" && o.client_order_id === clientOrderId));
    this.dirty = true;
  }

  /** Merge an order report; returns true when something visible changed. */
  apply(report) {
    if (!report || !report.order_id) return false;
    const cur = this.find(report.order_id, report.client_order_id);
    if (!cur || !this.sameOrder(cur, report)) return false;
    const { trades, ...fields } = report;
    if (cur.status !== "sending" && !isNewer(cur, fields)) return false;
    const changed = cur.status !== fields.status || cur.filled_quantity !== fields.filled_quantity;
    Object.assign(cur, fields);
    if (changed) this.fresh.add(cur.order_id);
    for (const t of trades || []) this.addFill(t);
    this.save();
    return changed;
  }

  /**
   * Every order placed here carries our client_order_id; a report for the same
   * order_id with another one is a different order (a server that lost its
   * data and handed the id out again), not an update of ours.
   */
  sameOrder(cur, report) {
    return !cur.client_order_id || cur.client_order_id === report.client_order_id || cur.status === "sending";
  }

  markUnknown(orderId) {
    const cur = this.find(orderId);
    if (cur && !TERMINAL.has(cur.status)) {
      cur.status = "unknown";
      this.save();
    }
  }

  /** Record `trade` if one of its orders is ours; returns true when added. */
  addFill(trade) {
    let added = false;
    for (const role of ["taker", "maker"]) {
      const orderId = role === "taker" ? trade.taker_order_id : trade.maker_order_id;
      if (!this.isMine(orderId)) continue;
      if (this.fills.some((f) => f.trade_id === trade.trade_id && f.role === role)) continue;
      const takerSide = trade.aggressor_side;
      this.fills.push({
        trade_id: trade.trade_id,
        order_id: orderId,
        role,
        symbol: trade.symbol,
        side: role === "taker" ? takerSide : takerSide === "buy" ? "sell" : "buy",
        price: trade.price,
        quantity: trade.quantity,
        fee: role === "taker" ? trade.taker_fee : trade.maker_fee,
        timestamp: trade.timestamp,
      });
      added = true;
    }
    if (added) this.save();
    return added;
  }

  open() {
    return this.orders.filter((o) => isOpen(o) || o.status === "sending");
  }

  clearFinished() {
    this.orders = this.orders.filter((o) => !TERMINAL.has(o.status));
    const kept = new Set(this.orders.map((o) => o.order_id));
    this.fills = this.fills.filter((f) => kept.has(f.order_id));
    this.save();
  }

  /** Render the chosen tab ("open" | "history" | "fills") into the table. */
  render(tab, specs) {
    const head = document.getElementById("my-orders-head");
    const body = document.getElementById("my-orders");
    const empty = document.getElementById("my-orders-empty");
    document.getElementById("open-count").textContent = String(this.open().length);
    document.getElementById("fills-count").textContent = String(this.fills.length);
    const fmt = (symbol, kind, value) => {
      const spec = specs[symbol];
      if (value === null || value === undefined || value === "") return "—";
      return spec ? fixed(value, kind === "price" ? spec.priceDecimals : spec.qtyDecimals) : value;
    };
    const time = (iso) => {
      const d = new Date(iso);
      return Number.isNaN(d.getTime()) ? "" : d.toLocaleTimeString([], { hour12: false });
    };
    let rows = [];
    if (tab === "fills") {
      head.innerHTML =
        "<tr><th>Time</th><th>Symbol</th><th>Side</th><th>Role</th><th>Price</th><th>Amount</th><th>Fee</th><th>Order id</th><th>Trade id</th></tr>";
      rows = this.fills
        .slice()
        .reverse()
        .map(
          (f) =>
            `<tr data-trade-id="${esc(f.trade_id)}"><td>${time(f.timestamp)}</td><td>${esc(f.symbol)}</td>` +
            `<td class="${f.side === "buy" ? "up" : "down"}">${esc(f.side)}</td><td>${esc(f.role)}</td>` +
            `<td>${esc(fmt(f.symbol, "price", f.price))}</td><td>${esc(fmt(f.symbol, "qty", f.quantity))}</td>` +
            `<td>${esc(f.fee ?? "—")}</td><td class="id">${esc(f.order_id)}</td><td class="id">${esc(f.trade_id)}</td></tr>`,
        );
    } else {
      head.innerHTML =
        "<tr><th>Time</th><th>Symbol</th><th>Side</th><th>Type</th><th>Price</th><th>Amount</th><th>Filled</th>" +
        "<th>Avg price</th><th>Status</th><th>Order id</th><th></th></tr>";
      const list = (tab === "open" ? this.open() : this.orders).slice().reverse();
      rows = list.map((o) => {
        const cancel = isOpen(o)
          ? `<button type="button" class="cancel-btn" data-action="amend" data-order-id="${esc(o.order_id)}" data-testid="amend-${esc(o.order_id)}">Edit</button> ` +
            `<button type="button" class="cancel-btn" data-action="cancel" data-order-id="${esc(o.order_id)}" data-testid="cancel-${esc(o.order_id)}">Cancel</button>`
          : "";
        const stop = o.stop_price ? `stop ${fmt(o.symbol, "price", o.stop_price)} · ` : "";
        const price = o.price === null || o.price === undefined ? "market" : fmt(o.symbol, "price", o.price);
        const fresh = this.fresh.has(o.order_id) ? " fresh" : "";
        return (
          `<tr class="order-row${fresh}" data-order-id="${esc(o.order_id)}" data-status="${esc(o.status)}" data-symbol="${esc(o.symbol)}">` +
          `<td>${time(o.timestamp)}</td><td>${esc(o.symbol)}</td>` +
          `<td class="${o.side === "buy" ? "up" : "down"}">${esc(o.side)}</td><td>${esc(o.order_type)}</td>` +
          `<td>${esc(stop + price)}</td>` +
          `<td>${esc(fmt(o.symbol, "qty", o.quantity))}</td>` +
          `<td class="filled">${esc(fmt(o.symbol, "qty", o.filled_quantity))}</td>` +
          `<td>${esc(fmt(o.symbol, "price", o.average_price))}</td>` +
          `<td><span class="status ${esc(o.status)}">${esc(o.status.replace("_", " "))}</span></td>` +
          `<td class="id">${esc(o.status === "sending" ? "…" : o.order_id)}</td><td>${cancel}</td></tr>`
        );
      });
    }
    this.fresh.clear();
    this.dirty = false;
    body.innerHTML = rows.join("");
    empty.hidden = rows.length > 0;
    empty.textContent =
      tab === "fills" ? "No fills yet." : tab === "open" ? "No open orders from this browser." : "No orders placed from this browser yet.";
  }
}
