// The account's orders and fills, as the server knows them: "open orders"
// (GET /orders?status=open), "order history" (GET /orders?status=all) and
// "my fills" (GET /fills), re-read after the account's `order_event`s.
//
// Nothing about orders is kept in the browser between visits: the server is the
// truth, and what is shown belongs to the account of the session's API key (with
// `--auth off`, to the one account everybody shares).
//
// Between two reads, an `order_event` (or the answer to a POST) is merged at once
// so that the table follows the market without waiting for the next read. A read
// that was in flight while such an update arrived must not undo it: updates never
// move an order backwards (a finished order does not reopen, `filled_quantity`
// never shrinks), and the updates seen during a read are applied again on top of it.

import { compare, fixed } from "./decimal.js";

export const OPEN_LIMIT = 1000; // the contract's most per GET /orders
export const HISTORY_LIMIT = 100;
export const FILLS_LIMIT = 100;
const FINISHED = new Set(["filled", "cancelled"]);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Resting, or waiting for its trigger (stop orders): it can still be cancelled. */
// Why the engine closed an order (`cancel_reason`), in words; "user" needs none.
const REASONS = {
  unfilled: ["unfilled", "the rest found nothing to trade with and was cancelled"],
  self_trade: ["self trade", "cancelled by self-trade prevention"],
  insufficient_funds: [
    "insufficient funds",
    "stopped when the available balance no longer covered the next fill and its fee",
  ],
  post_only: ["post only", "post-only: it would have taken liquidity"],
  expired: ["expired", "its expiry time passed"],
};

/** `cancel_reason` as {text, title} ("" for none or "user"). */
export function reasonText(reason) {
  if (!reason || reason === "user") return { text: "", title: "" };
  const known = REASONS[reason];
  return known ? { text: known[0], title: known[1] } : { text: String(reason).replaceAll("_", " "), title: "" };
}

export const isOpen = (o) => o.status === "new" || o.status === "partially_filled" || o.status === "pending";

/** True when `upd` is not older than `cur` (status never goes back, fills never shrink). */
function isNewer(cur, upd) {
  if (FINISHED.has(cur.status) && !FINISHED.has(upd.status)) return false;
  if (cur.filled_quantity && upd.filled_quantity && compare(upd.filled_quantity, cur.filled_quantity) < 0) return false;
  return true;
}

function upsert(list, report, atFront) {
  const i = list.findIndex((o) => o.order_id === report.order_id);
  if (i < 0) {
    if (atFront) list.unshift(report);
    else list.push(report);
    return true;
  }
  if (!isNewer(list[i], report)) return false;
  list[i] = report;
  return true;
}

export class AccountOrders {
  constructor() {
    this.reset();
  }

  /** Forget everything (log out, or another account logs in). */
  reset() {
    this.openOrders = [];
    this.history = [];
    this.fills = [];
    this.loaded = false;
    this.fresh = new Set();
    this.sinceRead = null; // reports merged while a read is in flight
    this.amendable = this.amendable ?? false; // an "Edit" button on open orders (an amend form handles it)
    // The table is rebuilt only when something in it changed: rebuilding it on
    // every market-data frame would swallow clicks on its Cancel buttons.
    this.dirty = true;
  }

  /** A read of the three lists starts: remember the updates merged meanwhile. */
  beginRead() {
    this.sinceRead = [];
  }

  /** The lists as the server answered them (`null` for a list that failed). */
  endRead({ open, history, fills }) {
    const replay = this.sinceRead || [];
    this.sinceRead = null;
    if (open) this.openOrders = open.filter(isOpen);
    if (history) this.history = history.slice();
    if (fills) this.fills = fills.slice();
    for (const report of replay) this.merge(report);
    this.loaded = true;
    this.dirty = true;
  }

  /** Merge an order report (event or answer); returns true when something visible changed. */
  apply(report) {
    if (!report || !report.order_id) return false;
    if (this.sinceRead) this.sinceRead.push(report);
    return this.merge(report);
  }

  merge(report) {
    const { trades, ...order } = report;
    const before = this.history.find((o) => o.order_id === order.order_id);
    const changed = upsert(this.history, order, true);
    if (!changed) return false;
    if (this.history.length > HISTORY_LIMIT) this.history.length = HISTORY_LIMIT;
    const i = this.openOrders.findIndex((o) => o.order_id === order.order_id);
    if (isOpen(order)) {
      if (i < 0) this.openOrders.unshift(order);
      else if (isNewer(this.openOrders[i], order)) this.openOrders[i] = order;
    } else if (i >= 0) {
      this.openOrders.splice(i, 1);
    }
    if (!before || before.status !== order.status || before.filled_quantity !== order.filled_quantity) {
      this.fresh.add(order.order_id);
    }
    this.dirty = true;
    return true;
  }

  open() {
    return this.openOrders;
  }

  /** The account's order `orderId` as last read or merged (open ones first), or undefined. */
  find(orderId) {
    return this.openOrders.find((o) => o.order_id === orderId) || this.history.find((o) => o.order_id === orderId);
  }

  /** True for an order of the account that the lists hold. */
  isMine(orderId) {
    return this.find(orderId) !== undefined;
  }

  /**
   * Render the chosen tab ("open" | "history" | "fills") into the table.
   * `notice`, when given, replaces the table (logged out, loading, an error).
   */
  render(tab, specs, notice) {
    const head = document.getElementById("my-orders-head");
    const body = document.getElementById("my-orders");
    const empty = document.getElementById("my-orders-empty");
    const count = (n, limit) => (n >= limit ? `${limit}+` : String(n));
    document.getElementById("open-count").textContent = notice ? "0" : count(this.openOrders.length, OPEN_LIMIT);
    document.getElementById("fills-count").textContent = notice ? "0" : count(this.fills.length, FILLS_LIMIT);
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
    if (notice) {
      head.innerHTML = "";
    } else if (tab === "fills") {
      head.innerHTML =
        "<tr><th>Time</th><th>Symbol</th><th>Side</th><th>Role</th><th>Price</th><th>Amount</th><th>Fee</th><th>Order id</th><th>Trade id</th></tr>";
      rows = this.fills.map(
        (f) =>
          `<tr class="fill-row" data-trade-id="${esc(f.trade_id)}" data-order-id="${esc(f.order_id)}"><td>${time(f.timestamp)}</td><td>${esc(f.symbol)}</td>` +
          `<td class="${f.side === "buy" ? "up" : "down"}">${esc(f.side)}</td><td>${esc(f.liquidity)}</td>` +
          `<td>${esc(fmt(f.symbol, "price", f.price))}</td><td>${esc(fmt(f.symbol, "qty", f.quantity))}</td>` +
          `<td>${esc(f.fee ?? "—")}</td><td class="id">${esc(f.order_id)}</td><td class="id">${esc(f.trade_id)}</td></tr>`,
      );
    } else {
      head.innerHTML =
        "<tr><th>Time</th><th>Symbol</th><th>Side</th><th>Type</th><th>Price</th><th>Amount</th><th>Filled</th>" +
        "<th>Avg price</th><th>Status</th><th>Order id</th><th></th></tr>";
      const list = tab === "open" ? this.openOrders : this.history;
      rows = list.map((o) => {
        const edit = this.amendable
          ? `<button type="button" class="cancel-btn" data-action="amend" data-order-id="${esc(o.order_id)}" data-testid="amend-${esc(o.order_id)}">Edit</button> `
          : "";
        const cancel = isOpen(o)
          ? `${edit}<button type="button" class="cancel-btn" data-action="cancel" data-order-id="${esc(o.order_id)}" data-testid="cancel-${esc(o.order_id)}">Cancel</button>`
          : "";
        const stop = o.stop_price ? `stop ${fmt(o.symbol, "price", o.stop_price)} · ` : "";
        const fresh = this.fresh.has(o.order_id) ? " fresh" : "";
        const status = String(o.status || "");
        const why = reasonText(o.cancel_reason);
        const reason = why.text ? ` (${why.text})` : "";
        return (
          `<tr class="order-row${fresh}" data-order-id="${esc(o.order_id)}" data-status="${esc(status)}" data-symbol="${esc(o.symbol)}">` +
          `<td>${time(o.timestamp)}</td><td>${esc(o.symbol)}</td>` +
          `<td class="${o.side === "buy" ? "up" : "down"}">${esc(o.side)}</td><td>${esc(o.order_type)}</td>` +
          `<td>${esc(stop + (o.price === null || o.price === undefined ? "market" : fmt(o.symbol, "price", o.price)))}</td>` +
          `<td>${esc(fmt(o.symbol, "qty", o.quantity))}</td>` +
          `<td class="filled">${esc(fmt(o.symbol, "qty", o.filled_quantity))}</td>` +
          `<td>${esc(fmt(o.symbol, "price", o.average_price))}</td>` +
          `<td><span class="status ${esc(status)}" data-cancel-reason="${esc(o.cancel_reason || "")}" title="${esc(why.title)}">` +
          `${esc(status.replace("_", " "))}${esc(reason)}</span></td>` +
          `<td class="id">${esc(o.order_id)}</td><td>${cancel}</td></tr>`
        );
      });
    }
    this.fresh.clear();
    this.dirty = false;
    body.innerHTML = rows.join("");
    empty.hidden = rows.length > 0;
    empty.textContent =
      notice ||
      (!this.loaded
        ? "Loading…"
        : tab === "fills"
          ? "No fills yet."
          : tab === "open"
            ? "No open orders."
            : "No orders yet.");
  }
}
