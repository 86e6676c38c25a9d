// The trader's session: the API key, the account it belongs to, and the private
// Socket.IO connection that carries that account's `order_event`s and `balance`s.
//
// Modes, found out by GET /account without a key when the page loads:
// - "on"  (401): the server has `--auth on`. The page asks for an API key, checks it
//   with GET /account (X-API-Key) and keeps it in sessionStorage: this tab only,
//   gone when the tab closes; never in localStorage, a cookie or a URL. Logging out
//   forgets it and disconnects the private socket.
// - "off" (200): `--auth off`, one account everybody shares; no login, the page
//   works at once and the lists show that account's orders.
// - "none" (404): a server without accounts (older than the accounts contract).
//
// The private socket is a second connection to `/market`, made with
// auth={"api_key": key} (none in "off"); it subscribes to `order_events` and
// `balances` only, so that the public market-data connection never depends on a
// key and survives logins and logouts.
//
// Balances: GET /account when the session starts and on every (re)connect of the
// private socket, then each `balance` event (payload as GET /account) as it comes.
// An answer of GET /account is dropped when a `balance` event arrived while it was
// in flight (the event is at least as new). A server that refuses the `balances`
// subscription (one without private balance events) still gets the balances read
// again with the lists, after the account's order events. Any 401 to a private call, a refused subscription, a
// refused reconnection that GET /account confirms, or the GET /account asked every
// 10 s while logged in (a revoked key's socket just stops receiving) ends the
// session with a message.

import { api, onUnauthorized, setApiKey } from "./api.js";
import { FILLS_LIMIT, HISTORY_LIMIT, OPEN_LIMIT } from "./orders.js";

const KEY_STORAGE = "matchbook.apiKey";
const REFRESH_GAP_MS = 400; // at most one read of the lists per gap, however many events
// GET /account while logged in: a key revoked meanwhile only takes the private socket
// out of its rooms (no event says so), so the page asks now and then.
const ACCOUNT_CHECK_MS = 10_000;
const KEY_PATTERN = /^[\x21-\x7e]{1,512}$/; // printable ASCII, no spaces: what can travel in a header

const $ = (id) => document.getElementById(id);

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE);
  } catch (err) {
    return null;
  }
}

function storeKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch (err) {
    // Storage disabled: the session lasts as long as the page.
  }
}

export class Session {
  /**
   * `orders` is the AccountOrders to fill; `onChange()` asks the page to re-render;
   * `onEvent(msg)`, when set, sees every `order_event` of the account as it arrives.
   */
  constructor(orders, onChange) {
    this.orders = orders;
    this.onChange = onChange;
    this.onEvent = null;
    // `onBalances(account, source)` sees each new state of the balances
    // ("rest" | "event"; account null when there is none to show).
    this.onBalances = null;
    this.balanceEvents = 0; // balance events seen (answers older than one are dropped)
    this.balancesLive = false; // the server accepted the `balances` subscription
    this.mode = "unknown";
    this.account = null;
    this.key = null;
    this.message = "";
    this.socket = null;
    this.gen = 0; // bumped at every login/logout: answers of an older session are dropped
    this.reading = false;
    this.readAgain = false;
    this.refreshTimer = null;
    this.accountTimer = null;
    this.lastRead = 0;
    this.checking = false;
    this.listError = "";
    onUnauthorized(() => this.expired());
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.login($("login-key").value);
    });
    $("logout").addEventListener("click", () => this.logout(""));
  }

  /** Logged in, or no login needed: orders can be sent and lists read. */
  active() {
    return this.mode === "off" || (this.mode === "on" && this.account !== null);
  }

  /** Orders can be sent: a session, or a server that keeps no accounts at all. */
  canTrade() {
    return this.active() || this.mode === "none";
  }

  /** Find out the server's mode, and resume a login kept by this tab. */
  async detect() {
    for (;;) {
      const result = await api.accountWith(null);
      if (result.ok) {
        this.mode = "off";
        this.account = result.data;
        this.start();
        this.showBalances(result.data, "rest");
        break;
      }
      if (result.status === 401) {
        this.mode = "on";
        const key = storedKey();
        if (key) await this.login(key, true);
        break;
      }
      if (result.status === 404) {
        this.mode = "none";
        break;
      }
      this.message = `Cannot reach the server (${result.error.message}), retrying…`;
      this.render();
      await new Promise((r) => setTimeout(r, 2000));
    }
    this.message = this.mode === "none" ? "This server keeps no accounts (GET /account: 404)." : this.message;
    this.render();
  }

  async login(text, resuming = false) {
    const key = String(text || "").trim();
    const button = $("login-submit");
    if (!KEY_PATTERN.test(key)) {
      this.message = key ? "That is not an API key (letters, digits and symbols, no spaces)." : "Enter your API key.";
      this.render();
      return false;
    }
    button.disabled = true;
    this.message = resuming ? "" : "Checking the key…";
    this.render();
    const result = await api.accountWith(key);
    button.disabled = false;
    if (!result.ok && result.status !== 401 && resuming) {
      // The server is down or restarting: keep the tab's key and try again.
      this.message = `Cannot reach the server (${result.error.message}), retrying…`;
      this.render();
      await new Promise((r) => setTimeout(r, 2000));
      return storedKey() === key ? this.login(key, true) : false;
    }
    if (!result.ok) {
      if (result.status === 401) storeKey(null);
      this.message =
        result.status === 401
          ? resuming
            ? "Your API key is no longer accepted (revoked or unknown). Log in again."
            : "This API key was not accepted: unknown or revoked."
          : `Could not log in: ${result.error.message || result.error.code}`;
      this.render();
      return false;
    }
    this.stop();
    this.key = key;
    this.account = result.data;
    this.message = "";
    storeKey(key);
    setApiKey(key);
    $("login-key").value = "";
    this.start();
    this.showBalances(result.data, "rest");
    this.render();
    return true;
  }

  /** Forget the key, close the private socket and clear the lists; `message` says why. */
  logout(message) {
    this.stop();
    storeKey(null);
    setApiKey(null);
    this.key = null;
    this.account = null;
    this.message = message;
    this.render();
  }

  /** The server refused the session's key (401): back to the login with a message. */
  expired() {
    if (this.mode !== "on" || !this.key) return;
    this.logout("Your API key is no longer accepted (revoked or unknown). Log in again.");
  }

  start() {
    this.gen += 1;
    this.orders.reset();
    this.connect();
    this.refresh();
    if (this.mode === "on") this.accountTimer = setInterval(() => this.check(() => {}), ACCOUNT_CHECK_MS);
  }

  stop() {
    this.gen += 1;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    if (this.accountTimer) clearInterval(this.accountTimer);
    this.accountTimer = null;
    this.readAgain = false;
    if (this.socket) {
      this.socket.removeAllListeners(); // no "disconnect" handler runs for a socket we close
      this.socket.disconnect(); // its own connection (forceNew): closed with it
      this.socket = null;
    }
    this.orders.reset();
    this.balancesLive = false;
    this.showBalances(null, "rest");
    this.setSocketState("off");
    this.onChange();
  }

  // ------------------------------------------------------------ private socket

  connect() {
    const gen = this.gen;
    const socket = window.io("/market", {
      forceNew: true, // its own connection: the public one carries no key
      auth: this.key ? { api_key: this.key } : {},
      reconnectionDelay: 500,
      reconnectionDelayMax: 2000,
      timeout: 5000,
    });
    this.socket = socket;
    this.setSocketState("connecting");
    socket.on("connect", () => {
      this.balancesLive = false;
      socket.timeout(5000).emit("subscribe", { type: "balances" }, (err, answer) => {
        if (gen !== this.gen) return;
        if (answer && answer.ok) this.balancesLive = true;
        else if (!err) console.warn("balances subscription refused: balances follow the order events", answer);
      });
      this.loadBalances(); // the initial state, and what changed while disconnected
      socket.timeout(5000).emit("subscribe", { type: "order_events" }, (err, answer) => {
        if (gen !== this.gen) return;
        if (err) return; // no acknowledgement: the next reconnect subscribes again
        if (answer && answer.ok) {
          this.setSocketState("connected");
          this.refresh(); // catch up on what happened while not subscribed
        } else if (answer && answer.error && answer.error.code === "UNAUTHENTICATED") {
          this.expired();
        } else {
          console.warn("order_events subscription refused", answer);
        }
      });
    });
    socket.on("order_event", (msg) => {
      if (gen !== this.gen || !msg || !msg.order) return;
      if (this.orders.apply(msg.order)) this.onChange();
      if (this.onEvent) this.onEvent(msg);
      this.scheduleRefresh();
    });
    socket.on("balance", (msg) => {
      if (gen !== this.gen || !msg || !Array.isArray(msg.balances)) return;
      this.balanceEvents += 1;
      this.showBalances(msg, "event");
    });
    socket.on("disconnect", (reason) => {
      if (gen !== this.gen) return;
      this.setSocketState("disconnected");
      // The server closed it (a revoked key, for one): ask whether the key still
      // works before reconnecting by hand (Socket.IO does not after a server disconnect).
      if (reason === "io server disconnect") this.check(() => socket.connect());
    });
    socket.on("connect_error", () => {
      if (gen !== this.gen) return;
      this.setSocketState("disconnected");
      this.check(() => {});
    });
  }

  /** GET /account with the key: a 401 ends the session (api.js calls expired()); else `then()`. */
  async check(then) {
    if (this.mode !== "on" || !this.key || this.checking) return;
    this.checking = true;
    const gen = this.gen;
    const seen = this.balanceEvents;
    const result = await api.account();
    this.checking = false;
    if (gen === this.gen && result.ok && seen === this.balanceEvents) this.showBalances(result.data, "rest");
    if (gen === this.gen && (result.ok || result.status !== 401)) then();
  }

  // ------------------------------------------------------------ balances

  /** GET /account, unless a `balance` event overtakes the answer. */
  async loadBalances() {
    if (!this.active()) return;
    const gen = this.gen;
    const seen = this.balanceEvents;
    const result = await api.account();
    if (gen === this.gen && result.ok && seen === this.balanceEvents) this.showBalances(result.data, "rest");
  }

  showBalances(account, source) {
    if (account) this.account = { ...this.account, ...account };
    if (this.onBalances) this.onBalances(account, source);
  }

  setSocketState(state) {
    $("account").dataset.socket = state;
  }

  // ------------------------------------------------------------ lists

  /** Read the lists soon: at most once per REFRESH_GAP_MS, however many events ask. */
  scheduleRefresh() {
    if (this.refreshTimer || !this.active()) return;
    const wait = Math.max(0, this.lastRead + REFRESH_GAP_MS - performance.now());
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refresh();
    }, wait);
  }

  /** Read open orders, history and fills from the server. */
  async refresh() {
    if (!this.active()) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    const gen = this.gen;
    this.reading = true;
    this.lastRead = performance.now();
    this.orders.beginRead();
    const [open, history, fills] = await Promise.all([
      api.orders("open", OPEN_LIMIT),
      api.orders("all", HISTORY_LIMIT),
      api.fills(FILLS_LIMIT),
      this.balancesLive ? null : this.loadBalances(),
    ]);
    this.reading = false;
    if (gen !== this.gen) return;
    this.orders.endRead({
      open: open.ok ? open.data.orders || [] : null,
      history: history.ok ? history.data.orders || [] : null,
      fills: fills.ok ? fills.data.fills || [] : null,
    });
    const failed = [open, history, fills].find((r) => !r.ok && r.status !== 401);
    this.listError = failed ? `Could not read the account's orders: ${failed.error.message || failed.error.code}` : "";
    this.onChange();
    if (this.readAgain) {
      this.readAgain = false;
      this.scheduleRefresh();
    }
  }

  // ------------------------------------------------------------ view

  /** What the orders panel shows instead of a table, or "" for the table. */
  notice() {
    if (this.mode === "unknown") return "Loading…";
    if (this.mode === "none") return this.message;
    if (this.mode === "on" && !this.account) return "Log in with an API key to see your orders.";
    return this.listError || "";
  }

  render() {
    const box = $("account");
    const loggedIn = this.mode === "on" && this.account !== null;
    const needLogin = this.mode === "on" && !loggedIn;
    box.dataset.state = this.mode === "on" ? (loggedIn ? "logged-in" : "logged-out") : this.mode;
    document.body.dataset.auth = this.mode;
    document.body.dataset.session = this.active() ? "active" : "none";
    const name = $("account-name");
    if (this.account) {
      name.textContent = this.mode === "off" ? `${this.account.name} (shared, no login)` : this.account.name;
      name.title = `account_id ${this.account.account_id}`;
    } else {
      name.textContent = needLogin ? "Not logged in" : "";
      name.title = "";
    }
    $("logout").hidden = !loggedIn;
    $("login-panel").hidden = !needLogin;
    const error = $("login-error");
    error.textContent = needLogin ? this.message : "";
    if (needLogin && document.activeElement === document.body) $("login-key").focus();
    this.onChange();
  }
}
