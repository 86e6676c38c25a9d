// Amend an open order in place (POST /amend), and the feed of what happens to
// this browser's orders (triggered, amended, filled, cancelled and why), shown
// as the order_events arrive.
//
// The amend form sits above the orders table rather than inside a row: the
// table is rebuilt whenever an order changes, which would wipe an editor in it.

import { toSteps } from "./decimal.js";
import { reasonText } from "./orders.js";

const $ = (id) => document.getElementById(id);
const FEED_SIZE = 6;

export class AmendForm {
  /**
   * `amend(body)` returns a promise of the API result ({ok, data, error});
   * `findOrder(orderId)` the order as this browser knows it; `specs` the
   * symbol specs by symbol.
   */
  constructor(amend, findOrder, specs) {
    this.amend = amend;
    this.findOrder = findOrder;
    this.specs = specs;
    this.orderId = null;
    this.form = $("amend-form");
    $("my-orders").addEventListener("click", (ev) => {
      const btn = ev.target.closest("button[data-action=amend]");
      if (btn) this.open(btn.dataset.orderId);
    });
    $("amend-close").addEventListener("click", () => this.close());
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.save();
    });
  }

  open(orderId) {
    const order = this.findOrder(orderId);
    if (!order) return;
    this.orderId = orderId;
    $("amend-id").textContent = `#${orderId}`;
    $("amend-price").value = order.price ?? "";
    $("amend-price").disabled = order.price === null || order.price === undefined;
    $("amend-quantity").value = order.quantity ?? "";
    $("amend-stop-price").value = order.stop_price ?? "";
    $("amend-stop-wrap").hidden = order.status !== "pending";
    $("amend-result").textContent = "";
    this.form.hidden = false;
    $("amend-quantity").focus();
  }

  close() {
    this.form.hidden = true;
    this.orderId = null;
  }

  /** Only what changed is sent; the server decides (and names the field at fault). */
  async save() {
    const order = this.findOrder(this.orderId);
    if (!order) return;
    const spec = this.specs[order.symbol];
    const body = { order_id: this.orderId };
    const changed = (input, current, step) => {
      const text = input.value.trim();
      if (!text || input.disabled || input.closest("[hidden]")) return null;
      const a = toSteps(text, step);
      const b = current ? toSteps(current, step) : null;
      return a !== null && b !== null && a === b ? null : text;
    };
    const price = changed($("amend-price"), order.price, spec.tick_size);
    const quantity = changed($("amend-quantity"), order.quantity, spec.lot_size);
    const stop = changed($("amend-stop-price"), order.stop_price, spec.tick_size);
    if (price !== null) body.price = price;
    if (quantity !== null) body.quantity = quantity;
    if (stop !== null) body.stop_price = stop;
    const msg = $("amend-result");
    if (Object.keys(body).length === 1) {
      msg.className = "small error";
      msg.textContent = "nothing changed";
      return;
    }
    const result = await this.amend(body);
    msg.className = `small ${result.ok ? "ok" : "error"}`;
    if (result.ok) {
      msg.textContent = `amended #${this.orderId}: ${result.data.status.replace("_", " ")}`;
    } else {
      const e = result.error || {};
      msg.textContent = e.field ? `${e.field}: ${e.message}` : e.message || e.code;
    }
  }
}

export class EventFeed {
  /** `isMine(orderId)`: whether the order was placed from this browser. */
  constructor(isMine) {
    this.isMine = isMine;
    this.list = $("event-feed");
  }

  /** Show an `order_event` of one of this browser's orders (the newest on top). */
  add(msg) {
    const order = msg && msg.order;
    if (!order || !this.isMine(order.order_id) || msg.event === "accepted") return;
    const reason = reasonText(order.cancel_reason);
    const why = order.cancel_reason ? ` (${reason.text || order.cancel_reason})` : "";
    const li = document.createElement("li");
    li.dataset.event = msg.event;
    li.dataset.orderId = order.order_id;
    li.dataset.cancelReason = order.cancel_reason || "";
    li.title = reason.title;
    li.className = msg.event === "filled" || msg.event === "triggered" ? "ok" : "";
    const time = new Date().toLocaleTimeString([], { hour12: false });
    li.textContent = `${time} #${order.order_id} ${order.side} ${order.order_type.replace("_", " ")}: ${msg.event}${why}`;
    this.list.prepend(li);
    while (this.list.children.length > FEED_SIZE) this.list.lastChild.remove();
  }
}
