// The account's funds on the page: the balances panel, and the order form's
// "max" and "cost incl. fees" rules.
//
// Balances come from the server as exact decimal strings (GET /account, then the
// private `balance` events: see account.js) and are shown exactly as sent. Every
// amount computed here (max quantity, cost, proceeds) is exact (decimal.js:
// BigInt scaled integers); floats never touch money.
//
// The rules follow the contract ("Balances") and what the server locks:
// - a buy with a price locks `price × quantity × (1 + fee)` of quote, the fee being
//   the higher of the symbol's two rates (the taker rate with the default fees:
//   a buyer filled as maker must never owe more than it locked);
// - a sell locks its quantity of base;
// - a market buy (and a stop / take-profit buy, which becomes one) locks nothing:
//   it runs while the available quote covers each fill and its taker fee, so its
//   max and cost are estimates at the best ask (at the stop price for a stop);
// - a market order by quote amount spends at most that amount plus the taker fee
//   (buy), or receives at most that amount minus the taker fee (sell).

import { exact, floorDiv, format, fromSteps, minus, parseDecimal, plus, times } from "./decimal.js";

const $ = (id) => document.getElementById(id);

const PRICED = new Set(["limit", "ioc", "fok", "stop_limit", "take_profit_limit"]);
const STOP_MARKET = new Set(["stop_loss", "take_profit"]);

/** The fee rate a buy with a price locks by: the higher of maker and taker. */
export function lockRate(spec) {
  const maker = exact(spec.maker_fee);
  const taker = exact(spec.taker_fee);
  return minus(maker, taker).int > 0n ? maker : taker;
}

/** A valid positive decimal string, or null. */
function positive(text) {
  const v = parseDecimal(String(text ?? "").trim());
  return v && v.int > 0n ? v : null;
}

/**
 * The price an order's funds are reckoned at, and what kind of figure that makes:
 * {price, rate, basis: "price" | "best ask" | "best bid" | "stop price"} or
 * {missing: "why"} when there is none yet.
 */
function reference(o) {
  const { spec, side, type } = o;
  const taker = exact(spec.taker_fee);
  if (PRICED.has(type)) {
    const price = positive(o.price);
    return price ? { price, rate: lockRate(spec), basis: "price" } : { missing: "enter a price first" };
  }
  if (STOP_MARKET.has(type)) {
    const stop = positive(o.stopPrice);
    return stop ? { price: stop, rate: taker, basis: "stop price" } : { missing: "enter a stop price first" };
  }
  // market: the other side's best price, as an estimate
  const best = side === "buy" ? o.bestAsk : o.bestBid;
  const basis = side === "buy" ? "best ask" : "best bid";
  const price = positive(best);
  return price ? { price, rate: taker, basis } : { missing: `no ${basis} in the book to estimate from` };
}

/** Decimals of the quote grid of a market order by quote amount (tick × lot). */
function quoteStep(spec) {
  return times(spec.tick_size, spec.lot_size);
}

/**
 * The "max" quantity for the form's state `o`:
 * {spec, side, type, byQuote, price, stopPrice, bestBid, bestAsk, available: {asset: text}}.
 * Answers {quantity: text, estimate: bool, basis, message} or {error: text}.
 */
export function maxQuantity(o) {
  const { spec, side } = o;
  const base = positive(o.available?.[spec.base]) ?? exact("0");
  const quote = positive(o.available?.[spec.quote]) ?? exact("0");
  const step = quoteStep(spec);
  if (o.type === "market" && o.byQuote) {
    // An amount of quote: what the balance pays for with the taker fee on top
    // (buy), or what the base would fetch at the best bid (sell, an estimate).
    let units;
    let estimate = false;
    let priceText = null;
    if (side === "buy") {
      units = floorDiv(quote, times(step, plus("1", spec.taker_fee)));
    } else {
      const ref = reference(o);
      if (ref.missing) return { error: `Max: ${ref.missing}` };
      units = floorDiv(times(base, ref.price), step);
      estimate = true;
      priceText = format(ref.price, decimalsOfStep(spec.tick_size));
    }
    if (units <= 0n) return { error: `Max: not enough ${side === "buy" ? spec.quote : spec.base} available` };
    const text = format(times(step, { int: units, scale: 0 }), step.scale);
    return { quantity: text, estimate, basis: side === "buy" ? "balance" : "best bid", price: priceText };
  }
  if (side === "sell") {
    const lots = floorDiv(base, spec.lot_size);
    if (lots <= 0n) return { error: `Max: less than one lot (${spec.lot_size}) of ${spec.base} available` };
    return { quantity: fromSteps(lots, spec.lot_size), estimate: false, basis: "balance" };
  }
  const ref = reference(o);
  if (ref.missing) return { error: `Max: ${ref.missing}` };
  // quote / (price × lot × (1 + fee)), whole lots, rounded down
  const lots = floorDiv(quote, times(times(ref.price, spec.lot_size), plus("1", ref.rate)));
  if (lots <= 0n) return { error: `Max: not enough ${spec.quote} available for one lot at this price` };
  const price = format(ref.price, decimalsOfStep(spec.tick_size));
  return { quantity: fromSteps(lots, spec.lot_size), estimate: ref.basis !== "price", basis: ref.basis, price };
}

/**
 * The cost line for the form's state `o` ({spec, side, type, byQuote, price,
 * quantity, stopPrice, bestBid, bestAsk, scale}): {label, value, asset, note,
 * estimate} with `value` exact text (at least `scale` decimals), or null when
 * the amount (or its price) is not there yet.
 */
export function costOf(o) {
  const { spec, side } = o;
  const quantity = positive(o.quantity);
  if (!quantity) return null;
  const scale = o.scale ?? 0;
  const taker = exact(spec.taker_fee);
  const label = side === "buy" ? "Cost incl. fees" : "Proceeds after fees";
  if (o.type === "market" && o.byQuote) {
    const value = side === "buy" ? times(quantity, plus("1", taker)) : times(quantity, minus("1", taker));
    const note = side === "buy" ? "at most: the amount plus the taker fee" : "at most: the amount minus the taker fee";
    return { label, value: format(value, scale), asset: spec.quote, note, estimate: false };
  }
  const ref = reference(o);
  if (ref.missing) return null;
  const notional = times(ref.price, quantity);
  const value = side === "buy" ? times(notional, plus("1", ref.rate)) : times(notional, minus("1", ref.rate));
  const priceText = format(ref.price, decimalsOfStep(spec.tick_size));
  let note;
  if (ref.basis === "price") {
    note =
      side === "buy"
        ? "locked when placed: price × amount × (1 + fee)"
        : "at least: price × amount × (1 − fee)";
  } else {
    note = `estimate at the ${ref.basis} ${priceText}`;
  }
  return { label, value: format(value, scale), asset: spec.quote, note, estimate: ref.basis !== "price" };
}

function decimalsOfStep(step) {
  const v = parseDecimal(step);
  return v ? v.scale : 0;
}

// ---------------------------------------------------------------- the panel

/** The trailing zeros of decimal text, dimmed (the text stays exactly the server's). */
function digitsHtml(text, esc) {
  const s = String(text);
  const m = /^(.*?\.\d*?)(0*)$/.exec(s);
  if (!m || !m[2]) return esc(s);
  const head = m[1].endsWith(".") ? m[1].slice(0, -1) : m[1];
  const tail = m[1].endsWith(".") ? `.${m[2]}` : m[2];
  return `${esc(head)}<span class="zeros">${esc(tail)}</span>`;
}

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export class BalancesPanel {
  constructor() {
    this.box = $("balances");
    this.rows = $("balances-rows");
    this.events = 0;
  }

  /**
   * Show `account` (the payload of GET /account or of a `balance` event; null
   * when logged out); `current` are the assets of the selected symbol.
   */
  render(account, current, source) {
    const box = this.box;
    if (source === "event") this.events += 1;
    box.dataset.events = String(this.events);
    const list = account && Array.isArray(account.balances) ? account.balances : null;
    if (!list) {
      box.hidden = true;
      box.dataset.state = "none";
      this.rows.innerHTML = "";
      return;
    }
    if (!list.length) {
      // --auth off: the shared account holds no balances (no funds in that mode).
      box.hidden = true;
      box.dataset.state = "empty";
      this.rows.innerHTML = "";
      return;
    }
    box.hidden = false;
    box.dataset.state = "shown";
    if (source) box.dataset.source = source;
    const mine = new Set(current || []);
    this.rows.innerHTML = list
      .map(
        (b) =>
          `<div class="balance-row${mine.has(b.asset) ? " current" : ""}" data-asset="${esc(b.asset)}" ` +
          `data-available="${esc(b.available)}" data-locked="${esc(b.locked)}">` +
          `<span class="asset">${esc(b.asset)}</span>` +
          `<span class="available" title="available">${digitsHtml(b.available, esc)}</span>` +
          `<span class="locked" title="locked in open orders">${digitsHtml(b.locked, esc)}</span></div>`,
      )
      .join("");
  }
}
