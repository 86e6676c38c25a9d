// Order entry form: side, type, price, quantity; client-side grid checks and the
// server's error messages shown next to the field they name.

import { fixed, group, multiply, parseDecimal, toSteps } from "./decimal.js";

const $ = (id) => document.getElementById(id);

export class OrderEntry {
  /** `onSubmit(order)` returns a promise of the API result ({ok, data, error}). */
  constructor(onSubmit) {
    this.onSubmit = onSubmit;
    this.side = "buy";
    this.type = "limit";
    this.spec = null;
    this.busy = false;
    this.form = $("order-form");
    this.price = $("order-price");
    this.quantity = $("order-quantity");
    this.submitBtn = $("order-submit");
    this.precheck = $("precheck");
    this.precheck.checked = localStorage.getItem("matchbook.precheck") !== "off";

    for (const btn of this.form.querySelectorAll(".side-btn")) {
      btn.addEventListener("click", () => this.setSide(btn.dataset.side));
    }
    for (const btn of this.form.querySelectorAll(".types button")) {
      btn.addEventListener("click", () => this.setType(btn.dataset.type));
    }
    for (const input of [this.price, this.quantity]) {
      input.addEventListener("input", () => {
        this.clearErrors(input.name);
        if (this.precheck.checked) this.showFieldError(input.name, this.check(input.name), "client");
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
  }

  setSpec(spec) {
    this.spec = spec;
    $("price-unit").textContent = spec.quote;
    $("quantity-unit").textContent = spec.base;
    $("grid-info").textContent = `tick ${spec.tick_size} · lot ${spec.lot_size}`;
    this.price.placeholder = spec.tick_size;
    this.quantity.placeholder = spec.lot_size;
    this.price.value = "";
    this.clearErrors();
    this.updateButton();
    this.updateNotional();
  }

  setSide(side) {
    this.side = side;
    for (const btn of this.form.querySelectorAll(".side-btn")) btn.classList.toggle("active", btn.dataset.side === side);
    this.updateButton();
  }

  setType(type) {
    this.type = type;
    for (const btn of this.form.querySelectorAll(".types button")) btn.classList.toggle("active", btn.dataset.type === type);
    const market = type === "market";
    this.price.disabled = market;
    $("field-price").classList.toggle("disabled", market);
    if (market) this.clearErrors("price");
    this.updateNotional();
  }

  /** Fill the price (clicking a book level or a trade). */
  setPrice(price) {
    if (this.type === "market") this.setType("limit");
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
    if (!this.spec || this.type === "market" || !parseDecimal(p) || !parseDecimal(q)) {
      el.textContent = "—";
      return;
    }
    const decimals = this.spec.priceDecimals + this.spec.qtyDecimals;
    el.textContent = `${group(fixed(multiply(p, q, decimals), this.spec.priceDecimals))} ${this.spec.quote}`;
  }

  /** Client-side message for `field` ("price" | "quantity"), or "" when it is fine. */
  check(field) {
    const spec = this.spec;
    if (!spec) return "";
    if (field === "price") {
      if (this.type === "market") return "";
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
    const lots = toSteps(text, spec.lot_size);
    if (lots === null) return `Amount must be a multiple of the lot size ${spec.lot_size}`;
    if (lots <= 0n) return `Amount must be at least the lot size ${spec.lot_size}`;
    return "";
  }

  clearErrors(field) {
    const fields = field ? [field] : ["price", "quantity"];
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
    const field = error.field === "qty" ? "quantity" : error.field;
    const message = error.message || error.code;
    if (field === "price" || field === "quantity") {
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
      const problems = ["price", "quantity"].map((f) => [f, this.check(f)]).filter(([, m]) => m);
      for (const [f, m] of problems) this.showFieldError(f, m, "client");
      if (problems.length) return;
    }
    const order = {
      symbol: this.spec.symbol,
      side: this.side,
      order_type: this.type,
      quantity: this.quantity.value.trim(),
    };
    if (this.type !== "market") order.price = this.price.value.trim();
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
      new: "resting on the book",
      partially_filled: `partially filled ${filled}${avg}, rest on the book`,
      filled: `filled ${filled}${avg}`,
      cancelled: toSteps(report.filled_quantity, spec.lot_size) > 0n
        ? `filled ${filled}${avg}, rest cancelled`
        : "nothing filled, cancelled",
    };
    el.innerHTML = "";
    const ok = document.createElement("span");
    ok.className = report.status === "cancelled" && !avg ? "" : "ok";
    ok.textContent = `${report.side} ${report.order_type} #${report.order_id}: ${words[report.status] || report.status}`;
    el.appendChild(ok);
  }
}
