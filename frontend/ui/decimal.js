// Exact decimal helpers for prices and quantities.
//
// The API sends prices and quantities as decimal strings on a per-symbol grid
// (tick_size, lot_size). The page never does arithmetic on them with binary
// floats: it converts a string to an integer number of grid steps (BigInt), sums
// and compares those, and formats back with the step's number of decimals.
// Floats are used only to size bars and draw charts, where exactness is moot.

const DECIMAL_TEXT = /^[0-9]+(\.[0-9]+)?$/;

/** Number of decimals of a step such as "0.01" (-> 2) or "1" (-> 0). */
export function decimalsOf(step) {
  const text = String(step);
  const dot = text.indexOf(".");
  if (dot < 0) return 0;
  return text.slice(dot + 1).replace(/0+$/, "").length;
}

/** Parse plain decimal text into {int: BigInt, scale}; null when it is not one. */
export function parseDecimal(text) {
  const s = String(text).trim();
  if (!DECIMAL_TEXT.test(s)) return null;
  const dot = s.indexOf(".");
  if (dot < 0) return { int: BigInt(s), scale: 0 };
  return { int: BigInt(s.slice(0, dot) + s.slice(dot + 1)), scale: s.length - dot - 1 };
}

function rescale(value, scale) {
  return value.int * 10n ** BigInt(scale - value.scale);
}

/**
 * Whole number of steps in `text` (BigInt), or null when `text` is not a plain
 * decimal or not an exact multiple of `step`.
 */
export function toSteps(text, step) {
  const v = parseDecimal(text);
  const st = parseDecimal(step);
  if (v === null || st === null || st.int === 0n) return null;
  const scale = Math.max(v.scale, st.scale);
  const a = rescale(v, scale);
  const b = rescale(st, scale);
  if (a % b !== 0n) return null;
  return a / b;
}

/** Format `steps` grid steps of `step` as a decimal string with the step's decimals. */
export function fromSteps(steps, step) {
  const st = parseDecimal(step);
  const decimals = decimalsOf(step);
  // steps * step, expressed with exactly `decimals` places.
  const scaled = steps * st.int * 10n ** BigInt(Math.max(0, decimals - st.scale));
  const divisor = 10n ** BigInt(Math.max(0, st.scale - decimals));
  return placeDot(scaled / divisor, decimals);
}

function placeDot(units, decimals) {
  const negative = units < 0n;
  let digits = (negative ? -units : units).toString();
  if (decimals > 0) {
    digits = digits.padStart(decimals + 1, "0");
    digits = digits.slice(0, -decimals) + "." + digits.slice(-decimals);
  }
  return (negative ? "-" : "") + digits;
}

/**
 * Re-format decimal text to exactly `decimals` places (pads with zeros; extra
 * non-zero digits are kept so that nothing is silently rounded away).
 */
export function fixed(text, decimals) {
  if (text === null || text === undefined) return "";
  const v = parseDecimal(text);
  if (v === null) return String(text);
  if (v.scale <= decimals) return placeDot(rescale(v, decimals), decimals);
  // "2900.0000000" trims to "2900" (not "2900.", which is no decimal text).
  const trimmed = String(text).trim().replace(/0+$/, "").replace(/\.$/, "");
  const dot = trimmed.indexOf(".");
  const kept = dot < 0 ? 0 : trimmed.length - dot - 1;
  return kept <= decimals ? placeDot(rescale(parseDecimal(trimmed), decimals), decimals) : trimmed;
}

/** Product of two decimal strings, exact, as text with `decimals` places (truncated). */
export function multiply(a, b, decimals) {
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  if (x === null || y === null) return null;
  const product = x.int * y.int;
  const scale = x.scale + y.scale;
  const units = scale >= decimals
    ? product / 10n ** BigInt(scale - decimals)
    : product * 10n ** BigInt(decimals - scale);
  return placeDot(units, decimals);
}

/** Compare two decimal strings exactly: -1, 0 or 1. */
export function compare(a, b) {
  const x = parseDecimal(a);
  const y = parseDecimal(b);
  const scale = Math.max(x.scale, y.scale);
  const p = rescale(x, scale);
  const q = rescale(y, scale);
  return p < q ? -1 : p > q ? 1 : 0;
}

/** Add thousands separators to decimal text ("30000.00" -> "30,000.00"). */
export function group(text) {
  if (!text) return text;
  const s = String(text);
  const dot = s.indexOf(".");
  const head = dot < 0 ? s : s.slice(0, dot);
  const tail = dot < 0 ? "" : s.slice(dot);
  return head.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + tail;
}

// ---------------------------------------------------------------- exact values
//
// Amounts that are not on one symbol's grid (balances, costs with fees, "max")
// are handled as exact values {int: BigInt, scale}: `int / 10^scale`. Products
// and sums stay exact; the only division is floorDiv, which answers a whole
// number (a count of lots), rounded down.

/** `value` (decimal text, or an exact value) as an exact value; null when it is not one. */
export function exact(value) {
  if (value !== null && typeof value === "object" && typeof value.int === "bigint") return value;
  return value === null || value === undefined ? null : parseDecimal(value);
}

/** a × b, exact. */
export function times(a, b) {
  const x = exact(a);
  const y = exact(b);
  return { int: x.int * y.int, scale: x.scale + y.scale };
}

/** a + b, exact. */
export function plus(a, b) {
  const x = exact(a);
  const y = exact(b);
  const scale = Math.max(x.scale, y.scale);
  return { int: rescale(x, scale) + rescale(y, scale), scale };
}

/** a − b, exact (may be negative). */
export function minus(a, b) {
  const y = exact(b);
  return plus(a, { int: -y.int, scale: y.scale });
}

/** floor(a / b) as a BigInt, for a ≥ 0 and b > 0 (null when b is zero). */
export function floorDiv(a, b) {
  const x = exact(a);
  const y = exact(b);
  if (y.int === 0n) return null;
  // a / b = (x.int / 10^x.scale) / (y.int / 10^y.scale)
  return (x.int * 10n ** BigInt(y.scale)) / (y.int * 10n ** BigInt(x.scale));
}

/**
 * An exact value as text with at least `decimals` places: padded with zeros,
 * never rounded (a value with more non-zero decimals keeps them).
 */
export function format(value, decimals) {
  let { int, scale } = exact(value);
  while (scale > decimals && int % 10n === 0n) {
    int /= 10n;
    scale -= 1;
  }
  if (scale < decimals) {
    int *= 10n ** BigInt(decimals - scale);
    scale = decimals;
  }
  return placeDot(int, scale);
}
