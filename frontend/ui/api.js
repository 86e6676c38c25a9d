// REST client for the service that served this page (same origin only).
//
// Every call resolves to {ok, status, data, error}: `error` is the contract's
// envelope body {code, message, field?} for 4xx/5xx answers, or
// {code: "NETWORK_ERROR", message} when the server could not be reached.
// Nothing here ever talks to another host: paths are relative to the page.
//
// Private calls (orders, cancels, the account's lists) carry the API key set
// with setApiKey() in the X-API-Key header, and only they do: public market data
// goes out without it. The key never goes into a URL. A 401 answer to a private
// call is also reported to the handler set with onUnauthorized(), which logs out.

let apiKey = null;
let unauthorized = null;

/** The key private calls send (null: none, as with `--auth off`). */
export function setApiKey(key) {
  apiKey = key || null;
}

/** `handler(error)` runs when a private call that sent a key is answered 401. */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

async function request(method, path, body, { auth = false, key } = {}) {
  const init = { method, cache: "no-store", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const sentKey = key !== undefined ? key : auth ? apiKey : null;
  if (sentKey) init.headers["X-API-Key"] = sentKey;
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    return { ok: false, status: 0, data: null, error: { code: "NETWORK_ERROR", message: "server unreachable" } };
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (response.ok) return { ok: true, status: response.status, data, error: null };
  let error = data && data.error;
  if (!error || typeof error !== "object") {
    error = { code: `HTTP_${response.status}`, message: `${response.status} ${response.statusText}`.trim() };
  }
  if (response.status === 429 && !error.message) error.message = "rate limited, try again shortly";
  // Only a call made with the session's key can end the session: a login attempt
  // with a mistyped key (explicit `key`) must not log out whoever is logged in.
  if (response.status === 401 && auth && key === undefined && unauthorized) unauthorized(error);
  return { ok: false, status: response.status, data, error };
}

const query = (params) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
};

export const api = {
  get: (path) => request("GET", path),
  // Every POST but /ping acts for an account (orders, cancels, amends): it carries the key.
  post: (path, body) => request("POST", path, body, { auth: true }),
  symbols: () => request("GET", "/symbols"),
  book: (symbol, levels) => request("GET", `/book/${encodeURIComponent(symbol)}?levels=${levels}`),
  bbo: (symbol) => request("GET", `/bbo/${encodeURIComponent(symbol)}`),
  trades: (symbol, limit) => request("GET", `/trades/${encodeURIComponent(symbol)}?limit=${limit}`),
  health: () => request("GET", "/health"),
  // Private: the session's key.
  order: (orderId) => request("GET", `/order/${encodeURIComponent(orderId)}`, undefined, { auth: true }),
  submit: (order) => request("POST", "/order", order, { auth: true }),
  cancel: (orderId) => request("POST", "/cancel", { order_id: orderId }, { auth: true }),
  amend: (body) => request("POST", "/amend", body, { auth: true }),
  cancelAll: (symbol) => request("POST", "/cancel_all", symbol ? { symbol } : {}, { auth: true }),
  orders: (status, limit) => request("GET", `/orders${query({ status, limit })}`, undefined, { auth: true }),
  fills: (limit) => request("GET", `/fills${query({ limit })}`, undefined, { auth: true }),
  account: () => request("GET", "/account", undefined, { auth: true }),
  /** GET /account with `key` (a login attempt; null: without any key). */
  accountWith: (key) => request("GET", "/account", undefined, { auth: true, key: key || null }),
};
