// Order entry form: side, type, price, quantity, and for the order types beyond
// the four a stop price (stops and take-profits), a display quantity (iceberg),
// an expiry (good till a time) and post-only; client-side grid checks and the
// server's error messages shown next to the field they name. With funds: a "Max"
// button that fills the amount from the available balance, and the cost (buy) or
// proceeds (sell) including fees, exact (the rules are in funds.js).

import { decimalsOf, fixed, group, multiply, parseDecimal, toSteps } from "./decimal.js";
import { costOf, maxQuantity } from "./funds.js";

const $ = (id) => document.getElementById(id);

const STOPS = new Set(["stop_loss", "stop_limit", "take_profit", "take_profit_limit"]);
const NO_PRICE = new Set(["market", "stop_loss", "take_profit"]);
// Fields with a box for their error under them (the server names them in `field`).
const FIELDS = ["price", "quantity", "stop_price", "display_quantity", "expire_time"];
// A price picked from the book turns a type without one into its limit kind.
const LIMIT_KIND = { market: "limit", stop_loss: "stop_limit", take_profit: "take_profit_limit" };

export class OrderEntry {
  /** `onSubmit(order)` returns a promise of the API result ({ok, data, error}). */
  constructor(onSubmit) {
    this.onSubmit = onSubmit;
    // `funds()` answers {available: {asset: text} | null, scales: {asset: n}, bestBid, bestAsk}
    // (app.js sets it); null: no funds to reckon with.
    this.funds = null;
    this.side = "buy";
    this.type = "limit";
    this.spec = null;
    this.busy = false;
    this.form = $("order-form");
    this.price = $("order-price");
    this.quantity = $("order-quantity");
    this.stopPrice = $("order-stop-price");
    this.display = $("order-display");
    this.expire = $("order-expire");
    this.postOnly = $("order-post-only");
    this.byQuote = $("order-by-quote");
    this.byQuote.addEventListener("change", () => {
      this.clearErrors("quantity");
      this.updateUnits();
      this.updateCost();
    });
    $("order-max").addEventListener("click", () => this.fillMax());
    this.submitBtn = $("order-submit");
    this.precheck = $("precheck");
    this.precheck.checked = localStorage.getItem("matchbook.precheck") !== "off";

    for (const btn of this.form.querySelectorAll(".side-btn")) {
      btn.addEventListener("click", () => this.setSide(btn.dataset.side));
    }
    for (const btn of this.form.querySelectorAll(".types button")) {
      btn.addEventListener("click", () => this.setType(btn.dataset.type));
    }
    for (const input of [this.price, this.quantity, this.stopPrice, this.display, this.expire]) {
      input.addEventListener("input", () => {
        this.clearErrors(input.name);
        if (this.precheck.checked) this.showFieldError(input.name, this.check(input.name), "client");
        if (input === this.quantity) this.setMaxNote("");
        this.updateNotional();
      });
    }
    this.precheck.addEventListener("change", () => {
      localStorage.setItem("matchbook.precheck", this.precheck.checked ? "on" : "off");
      this.clearErrors();
    });
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
    this.setType(this.type);
  }

  setSpec(spec) {
    this.spec = spec;
    $("price-unit").textContent = spec.quote;
    $("quantity-unit").textContent = spec.base;
    $("stop-price-unit").textContent = spec.quote;
    $("by-quote-unit").textContent = spec.quote;
    $("display-unit").textContent = spec.base;
    $("grid-info").textContent = `tick ${spec.tick_size} · lot ${spec.lot_size}`;
    this.price.placeholder = spec.tick_size;
    this.quantity.placeholder = spec.lot_size;
    this.price.value = "";
    this.stopPrice.value = "";
    this.setMaxNote("");
    this.clearErrors();
    this.updateButton();
    this.updateNotional();
  }

  setSide(side) {
    this.side = side;
    for (const btn of this.form.querySelectorAll(".side-btn")) btn.classList.toggle("active", btn.dataset.side === side);
    this.updateButton();
    this.updateCost();
  }

  setType(type) {
    this.type = type;
    for (const btn of this.form.querySelectorAll(".types button")) btn.classList.toggle("active", btn.dataset.type === type);
    const noPrice = NO_PRICE.has(type);
    this.price.disabled = noPrice;
    $("field-price").classList.toggle("disabled", noPrice);
    if (noPrice) this.clearErrors("price");
    // Each new field shows only where the contract allows it.
    $("field-stop_price").hidden = !STOPS.has(type);
    $("field-display_quantity").hidden = type !== "limit";
    $("field-post_only").hidden = type !== "limit";
    $("field-by_quote").hidden = type !== "market";
    this.updateUnits();
    $("field-expire_time").hidden = !(type === "limit" || type === "stop_limit" || type === "take_profit_limit");
    for (const f of ["stop_price", "display_quantity", "expire_time"]) if ($(`field-${f}`).hidden) this.clearErrors(f);
    this.updateNotional();
  }

  /** A market order by quote amount takes its amount in the quote asset. */
  quoteAmount() {
    return this.type === "market" && this.byQuote.checked;
  }

  updateUnits() {
    if (!this.spec) return;
    $("quantity-unit").textContent = this.quoteAmount() ? this.spec.quote : this.spec.base;
  }

  /** Fill the price (clicking a book level or a trade). */
  setPrice(price) {
    if (NO_PRICE.has(this.type)) this.setType(LIMIT_KIND[this.type]);
    this.price.value = price;
    this.clearErrors("price");
    this.updateNotional();
  }

  updateButton() {
    const base = this.spec ? this.spec.base : "";
    this.submitBtn.textContent = `${this.side === "buy" ? "Buy" : "Sell"} ${base}`.trim();
    this.submitBtn.classList.toggle("buy", this.side === "buy");
    this.submitBtn.classList.toggle("sell", this.side === "sell");
  }

  updateNotional() {
    const el = $("order-notional");
    const p = this.price.value.trim();
    const q = this.quantity.value.trim();
    this.updateCost();
    if (!this.spec || NO_PRICE.has(this.type) || !parseDecimal(p) || !parseDecimal(q)) {
      el.textContent = "—";
      return;
    }
    const decimals = this.spec.priceDecimals + this.spec.qtyDecimals;
    el.textContent = `${group(fixed(multiply(p, q, decimals), this.spec.priceDecimals))} ${this.spec.quote}`;
  }

  /** The form's state as funds.js reads it. */
  fundsState() {
    const f = this.funds ? this.funds() : {};
    const scales = f.scales || {};
    const spec = this.spec;
    const feeDecimals = Math.max(decimalsOf(spec.maker_fee), decimalsOf(spec.taker_fee));
    return {
      spec,
      side: this.side,
      type: this.type,
      byQuote: this.quoteAmount(),
      price: this.price.value,
      stopPrice: this.stopPrice.value,
      quantity: this.quantity.value,
      bestBid: f.bestBid ?? null,
      bestAsk: f.bestAsk ?? null,
      available: f.available ?? null,
      // The quote asset's decimals (GET /assets), else those of tick x lot x fee.
      scale: scales[spec.quote] ?? spec.priceDecimals + spec.qtyDecimals + feeDecimals,
    };
  }

  /** "Cost incl. fees" (buy) / "Proceeds after fees" (sell): exact; market kinds estimated. */
  updateCost() {
    const line = $("order-cost");
    if (!this.spec) return;
    const state = this.fundsState();
    // What the order spends from: quote for a buy, base for a sell (as the server sent it).
    const asset = this.side === "buy" ? this.spec.quote : this.spec.base;
    const available = state.available && state.available[asset] !== undefined ? `${state.available[asset]} ${asset}` : "—";
    if ($("order-available").textContent !== available) $("order-available").textContent = available;
    const cost = costOf(state);
    const text = cost ? `${cost.value} ${cost.asset}` : "—";
    const label = this.side === "buy" ? "Cost incl. fees" : "Proceeds after fees";
    if ($("order-cost-label").textContent !== label) $("order-cost-label").textContent = label;
    const value = $("order-cost-value");
    if (value.textContent !== text) value.textContent = text;
    const note = cost ? cost.note : "";
    if (line.dataset.value !== (cost ? cost.value : "") || $("order-cost-note").textContent !== note) {
      line.dataset.value = cost ? cost.value : "";
      line.dataset.estimate = cost && cost.estimate ? "true" : "false";
      $("order-cost-note").textContent = note;
    }
  }

  /** Fill the amount with the most the available balance allows (funds.js, maxQuantity). */
  fillMax() {
    if (!this.spec) return;
    const state = this.fundsState();
    this.clearErrors("quantity");
    if (!state.available) {
      this.setMaxNote("");
      this.showFieldError("quantity", "Max: no balances to go by (log in with an account that has funds)", "client");
      return;
    }
    const max = maxQuantity(state);
    if (max.error) {
      this.setMaxNote("");
      this.showFieldError("quantity", max.error, "client");
      return;
    }
    this.quantity.value = max.quantity;
    const asset = this.side === "buy" ? this.spec.quote : this.spec.base;
    const from = `from the available ${asset}`;
    const note = max.estimate
      ? `max ${from}, estimated at the ${max.basis}${max.price ? ` ${max.price}` : ""}: the fills may differ`
      : `max ${from}`;
    this.setMaxNote(note, max.estimate);
    this.updateNotional();
  }

  setMaxNote(text, estimate = false) {
    const note = $("order-max-note");
    note.textContent = text;
    note.dataset.estimate = estimate ? "true" : "false";
    note.hidden = !text;
  }

  /** Client-side message for `field` (one of FIELDS), or "" when it is fine. */
  check(field) {
    const spec = this.spec;
    if (!spec) return "";
    if (field === "stop_price") {
      if (!STOPS.has(this.type)) return "";
      const text = this.stopPrice.value.trim();
      if (!text) return "Stop price is required for stop and take-profit orders";
      if (!parseDecimal(text)) return "Stop price must be a plain decimal number, like 101.25";
      const steps = toSteps(text, spec.tick_size);
      if (steps === null) return `Stop price must be a multiple of the tick size ${spec.tick_size}`;
      if (steps <= 0n) return "Stop price must be positive";
      return "";
    }
    if (field === "display_quantity") {
      const text = this.display.value.trim();
      if (this.type !== "limit" || !text) return "";
      if (!parseDecimal(text)) return "Display must be a plain decimal number, like 0.1";
      const lots = toSteps(text, spec.lot_size);
      if (lots === null) return `Display must be a multiple of the lot size ${spec.lot_size}`;
      if (lots <= 0n) return `Display must be at least the lot size ${spec.lot_size}`;
      const total = toSteps(this.quantity.value.trim(), spec.lot_size);
      if (total !== null && lots >= total) return "Display must be below the amount";
      return "";
    }
    if (field === "expire_time") {
      const text = this.expire.value.trim();
      if (!text || this.$expireHidden()) return "";
      const minutes = Number(text);
      if (!parseDecimal(text) || !(minutes > 0)) return "Expiry must be a positive number of minutes";
      return "";
    }
    if (field === "price") {
      if (NO_PRICE.has(this.type)) return "";
      const text = this.price.value.trim();
      if (!text) return `Price is required for ${this.type} orders`;
      if (!parseDecimal(text)) return "Price must be a plain decimal number, like 101.25";
      const steps = toSteps(text, spec.tick_size);
      if (steps === null) return `Price must be a multiple of the tick size ${spec.tick_size}`;
      if (steps <= 0n) return "Price must be positive";
      return "";
    }
    const text = this.quantity.value.trim();
    if (!text) return "Amount is required";
    if (!parseDecimal(text)) return "Amount must be a plain decimal number, like 0.5";
    if (this.quoteAmount()) return ""; // a quote amount: its grid (tick x lot) is the server's to judge
    const lots = toSteps(text, spec.lot_size);
    if (lots === null) return `Amount must be a multiple of the lot size ${spec.lot_size}`;
    if (lots <= 0n) return `Amount must be at least the lot size ${spec.lot_size}`;
    return "";
  }

  $expireHidden() {
    return $("field-expire_time").hidden;
  }

  clearErrors(field) {
    const fields = field ? [field] : FIELDS;
    for (const f of fields) this.showFieldError(f, "");
    if (!field) $("order-error").textContent = "";
  }

  /** Show `message` under `field`; `source` ("client" | "server") is kept for tests. */
  showFieldError(field, message, source = "server") {
    const box = $(`${field}-error`);
    const wrap = $(`field-${field}`);
    if (!box) return false;
    box.textContent = message || "";
    box.dataset.source = message ? source : "";
    wrap.classList.toggle("invalid", Boolean(message));
    return true;
  }

  /** Place the server's error next to the field it names, or under the button. */
  showServerError(error) {
    if (error.code === "INSUFFICIENT_FUNDS") {
      // Not a field's fault: the account's balance. The server's message, under the button.
      $("order-error").textContent = error.message || error.code;
      return;
    }
    const field = error.field === "qty" || error.field === "quote_quantity" ? "quantity" : error.field;
    const message = error.message || error.code;
    if (FIELDS.includes(field) && !$(`field-${field}`).hidden) {
      this.showFieldError(field, message, "server");
    } else {
      $("order-error").textContent = field ? `${field}: ${message}` : message;
    }
  }

  async submit() {
    if (this.busy || !this.spec) return;
    this.clearErrors();
    $("order-result").textContent = "";
    if (this.precheck.checked) {
      const problems = FIELDS.map((f) => [f, this.check(f)]).filter(([, m]) => m);
      for (const [f, m] of problems) this.showFieldError(f, m, "client");
      if (problems.length) return;
    }
    const order = {
      symbol: this.spec.symbol,
      side: this.side,
      order_type: this.type,
      quantity: this.quantity.value.trim(),
    };
    if (this.quoteAmount()) {
      order.quote_quantity = order.quantity;
      delete order.quantity;
    }
    if (!NO_PRICE.has(this.type)) order.price = this.price.value.trim();
    if (STOPS.has(this.type)) order.stop_price = this.stopPrice.value.trim();
    if (this.type === "limit") {
      if (this.display.value.trim()) order.display_quantity = this.display.value.trim();
      if (this.postOnly.checked) order.post_only = true;
    }
    const minutes = this.expire.value.trim();
    if (minutes && !this.$expireHidden()) {
      // Sent as is when it is not a number: the server names the field.
      const ms = Number(minutes) * 60_000;
      order.expire_time = Number.isFinite(ms) && ms > 0 ? new Date(Date.now() + ms).toISOString() : minutes;
    }
    this.busy = true;
    this.submitBtn.disabled = true;
    try {
      const result = await this.onSubmit(order);
      if (result.ok) this.showResult(result.data);
      else this.showServerError(result.error);
    } finally {
      this.busy = false;
      this.submitBtn.disabled = false;
    }
  }

  showResult(report) {
    const spec = this.spec;
    const el = $("order-result");
    const filled = fixed(report.filled_quantity, spec.qtyDecimals);
    const avg = report.average_price ? ` @ ${fixed(report.average_price, spec.priceDecimals)}` : "";
    const words = {
      pending: `waiting for the last price to reach ${fixed(report.stop_price || "", spec.priceDecimals)}`,
      new: report.display_quantity ? `resting on the book, showing ${fixed(report.display_quantity, spec.qtyDecimals)}` : "resting on the book",
      partially_filled: `partially filled ${filled}${avg}, rest on the book`,
      filled: `filled ${filled}${avg}`,
      cancelled: toSteps(report.filled_quantity, spec.lot_size) > 0n
        ? `filled ${filled}${avg}, rest cancelled`
        : report.cancel_reason === "post_only"
          ? "cancelled: post-only, it would have taken"
          : "nothing filled, cancelled",
    };
    el.innerHTML = "";
    const ok = document.createElement("span");
    ok.className = report.status === "cancelled" && !avg ? "" : "ok";
    ok.textContent = `${report.side} ${report.order_type} #${report.order_id}: ${words[report.status] || report.status}`;
    el.appendChild(ok);
  }
}
