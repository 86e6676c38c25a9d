// REST client for the service that served this page (same origin only).
//
// Every call resolves to {ok, status, data, error}: `error` is the contract's
// envelope body {code, message, field?} for 4xx/5xx answers, or
// {code: "NETWORK_ERROR", message} when the server could not be reached.
// Nothing here ever talks to another host: paths are relative to the page.

async function request(method, path, body) {
  const init = { method, cache: "no-store", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
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
  return { ok: false, status: response.status, data, error };
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body),
  symbols: () => request("GET", "/symbols"),
  book: (symbol, levels) => request("GET", `/book/${encodeURIComponent(symbol)}?levels=${levels}`),
  bbo: (symbol) => request("GET", `/bbo/${encodeURIComponent(symbol)}`),
  trades: (symbol, limit) => request("GET", `/trades/${encodeURIComponent(symbol)}?limit=${limit}`),
  order: (orderId) => request("GET", `/order/${encodeURIComponent(orderId)}`),
  submit: (order) => request("POST", "/order", order),
  cancel: (orderId) => request("POST", "/cancel", { order_id: orderId }),
  amend: (body) => request("POST", "/amend", body),
  health: () => request("GET", "/health"),
};
