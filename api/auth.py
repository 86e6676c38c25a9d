"""Who is calling: API keys, the admin token, and the admin commands on accounts.

Modes (``create_app(config)["auth"]``; the factory's default is ``off``, the
command line's ``on``)
    ``on``   every private request carries ``X-API-Key`` (Socket.IO: ``auth=
             {"api_key": ...}`` at connect); admin requests ``X-Admin-Token``.
    ``off``  the original contract: no keys, one implicit account shared by
             everyone (``caller`` answers None), no self-trade prevention.
    Admin endpoints work in both (accounts made in ``off`` are there when the
    data dir is served with ``on``).

API keys
    ``mek_`` + 43 URL-safe base64 characters: 32 bytes from ``secrets``
    (256 bits). Shown once, when issued; only their SHA-256 (hex) is kept, in
    memory and in the journal. Why a plain hash and not a slow password hash
    (bcrypt, scrypt): a slow hash defends *guessable* secrets against offline
    guessing; nobody can enumerate 2**256 keys, so one SHA-256 is as strong
    here and costs ~0.5 us instead of ~50 ms on every request.
    Lookup is by the hash (a dict): its timing can at most reveal something
    about the *hash* of the guess, which a guesser already knows, and nothing
    about a stored key (finding a key for a given hash prefix is a preimage
    problem). The found record's hash is then compared with
    ``hmac.compare_digest`` all the same. Every failure -- missing, malformed
    (wrong prefix, length or alphabet, several headers, non-ASCII), unknown,
    revoked -- is the one ``401 UNAUTHENTICATED`` with the one message.
    A revoked key stops at once: REST looks the key up per request, the
    Socket.IO namespaces check the key they hold per event (an attribute
    read) and drop its private subscriptions when it is revoked.

Admin token
    ``DATA_DIR/admin.token`` (or ``--admin-token-file FILE``), created at the
    first start: 32 random bytes, URL-safe base64, file mode 0600, written
    with ``O_EXCL`` (never over an existing file). The server keeps only its
    SHA-256 and compares the SHA-256 of what a request brings with
    ``hmac.compare_digest``: constant time, whatever the length. The token
    never trades (it is not a key) and a key never opens admin endpoints.

Logs and audit lines name keys by ``key_id`` (the first 16 hex digits of the
hash), never in clear; the token is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time

from api import funds
from api.errors import HALTED, ServiceUnavailable, Unauthenticated
from engine.accounts import Account, ApiKey, check_name
from engine.errors import AccountNotFound, ValidationError
from storage.errors import StoreError

log = logging.getLogger(__name__)

MODES = ("on", "off")
KEY_PREFIX = "mek_"
KEY_BYTES = 32
KEY_LENGTH = len(KEY_PREFIX) + 43  # token_urlsafe(32): 43 characters, no padding
_KEY_RE = re.compile(r"mek_[A-Za-z0-9_\-]{43}")
ADMIN_TOKEN_FILE = "admin.token"
DEMO_KEY_FILE = "demo.key"
DEMO_ACCOUNT = "demo"
# What the demo account gets at its creation (journaled deposits), so that it
# can trade at once: quote assets a million, the default symbols' bases enough
# for a few hundred thousand of quote each; any other configured asset 1,000.
DEMO_DEPOSITS = {"USDT": "1000000", "BTC": "10", "ETH": "100", "BNB": "500", "SOL": "2000"}
DEMO_OTHER_QUOTE = "1000000"
DEMO_OTHER_BASE = "1000"
MIN_TOKEN_LENGTH = 22  # 128 bits of URL-safe base64
_MAX_TOKEN_LENGTH = 512

UNAUTHENTICATED_KEY = "a valid X-API-Key header is required"
UNAUTHENTICATED_ADMIN = "a valid X-Admin-Token header is required"
_ENVIRON_CALLER = "matching.caller"  # the request's resolved caller (or _INVALID)
_INVALID = object()


def new_key() -> str:
    """A new API key: the prefix and 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def key_hash(key: str) -> str:
    """The stored form of a key: SHA-256, 64 lowercase hex digits."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def well_formed(key) -> bool:
    """Has ``key`` the shape of a key this server issues? O(len)."""
    return type(key) is str and len(key) == KEY_LENGTH and _KEY_RE.fullmatch(key) is not None


def load_or_create_token(path: str) -> str:
    """The SHA-256 (hex) of the admin token in ``path``, creating the file
    (0600, exclusive) with a new token when it does not exist.

    Raises:
        ValueError: the file exists but holds no usable token (too short,
        several lines, not printable ASCII): refuse to start rather than
        accept a weak secret.
    """
    path = os.path.abspath(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, encoding="ascii", errors="replace") as f:
            token = f.read().strip()
        if not (MIN_TOKEN_LENGTH <= len(token) <= _MAX_TOKEN_LENGTH) or not token.isprintable():
            raise ValueError(
                f"{path}: not a usable admin token (one line of at least {MIN_TOKEN_LENGTH} printable "
                f"characters); delete it to have a new one made"
            ) from None
        if " " in token or not token.isascii():
            raise ValueError(f"{path}: an admin token is one word of printable ASCII") from None
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            log.warning("%s is readable by others (mode %o); chmod 600 it", path, mode)
        return hashlib.sha256(token.encode()).hexdigest()
    token = secrets.token_urlsafe(KEY_BYTES)
    try:
        os.write(fd, token.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("created the admin token file %s (mode 0600)", path)
    return hashlib.sha256(token.encode()).hexdigest()


def write_secret_file(path: str, secret: str) -> None:
    """Write ``secret`` to a new file of mode 0600 (never over an existing one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


class Auth:
    """Authentication of requests and Socket.IO sessions, and the admin
    commands on accounts and keys (journaled, audited).

    ``engine.accounts`` is the registry; ``store`` (optional) journals every
    admin change before it is answered, ``audit`` (optional) records it.
    """

    def __init__(
        self, engine, *, mode: str = "off", admin_token_hash: str | None = None, store=None, audit=None
    ):
        if mode not in MODES:
            raise ValueError(f"auth must be one of {MODES}, not {mode!r}")
        self.engine = engine
        self.registry = engine.accounts
        self.on = mode == "on"
        self.mode = mode
        self._token_hash = admin_token_hash.encode() if admin_token_hash else None
        # the journal of admin changes; a duck-typed store without it (tests) journals none
        self.store = store if hasattr(store, "log_command") else None
        self.audit = audit
        self.failures = 0  # refused keys and tokens, for /statistics
        self.revoke_listeners: list = []  # called with each revoked ApiKey (Socket.IO sessions)
        self.ledger = engine.ledger  # balances (None: no funds, --auth off)
        self.balance_feed = None  # api.funds.BalanceFeed, set by the app: balance events of deposits
        self.funds_ticket = 0  # the last deposit or withdrawal journaled (the balances' read barrier)

    # -- keys -----------------------------------------------------------------------
    def authenticate(self, key) -> tuple[Account, ApiKey] | None:
        """The account and key of an active API key, or None. O(len(key))."""
        if not well_formed(key):
            return None
        digest = key_hash(key)
        found = self.registry.authenticate(digest)
        if found is None or not hmac.compare_digest(found[1].key_hash, digest):
            return None
        return found

    def _resolve(self, environ) -> tuple[Account, ApiKey] | None:
        """The request's key, authenticated once per request (cached in the environ)."""
        found = environ.get(_ENVIRON_CALLER)
        if found is None:
            key = environ.get("HTTP_X_API_KEY")
            found = self.authenticate(key) if key is not None else None
            environ[_ENVIRON_CALLER] = found if found is not None else _INVALID
        return None if found is _INVALID else found

    def caller(self, request) -> Account | None:
        """The account of a private request: None in ``off`` (the shared
        account). O(1) after the first call per request.

        Raises:
            Unauthenticated: ``on`` and no valid ``X-API-Key``.
        """
        if not self.on:
            return None
        found = self._resolve(request.environ)
        if found is None:
            self.failures += 1
            raise Unauthenticated(UNAUTHENTICATED_KEY)
        return found[0]

    def rate_key(self, request) -> str:
        """What the rate limit counts a request against: its key if it carries a
        valid one (by hash: ``k:<hash>``), else its address. An invalid key
        counts against the address, so that random keys cannot escape the limit."""
        environ = request.environ
        if self.on and "HTTP_X_API_KEY" in environ:
            found = self._resolve(environ)
            if found is not None:
                return "k:" + found[1].key_hash
        return request.remote_addr or "-"

    def session(self, auth, environ) -> tuple[Account, ApiKey] | None:
        """A Socket.IO connection's key: ``auth={"api_key": KEY}`` at connect
        (or an ``X-API-Key`` header on the handshake). None when it brings
        none; in ``off`` always None.

        Raises:
            Unauthenticated: it brings a key that is not valid.
        """
        if not self.on:
            return None
        key = None
        if isinstance(auth, dict) and "api_key" in auth:
            key = auth["api_key"]
        elif environ is not None and "HTTP_X_API_KEY" in environ:
            key = environ["HTTP_X_API_KEY"]
        else:
            return None
        found = self.authenticate(key)
        if found is None:
            self.failures += 1
            raise Unauthenticated(UNAUTHENTICATED_KEY)
        return found

    # -- the admin token ---------------------------------------------------------------
    def check_admin(self, request) -> None:
        """Raises Unauthenticated unless ``X-Admin-Token`` is the admin token
        (compared as SHA-256 digests in constant time)."""
        token = request.environ.get("HTTP_X_ADMIN_TOKEN")
        if token is None or self._token_hash is None or len(token) > _MAX_TOKEN_LENGTH:
            self.failures += 1
            raise Unauthenticated(UNAUTHENTICATED_ADMIN)
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest().encode()
        if not hmac.compare_digest(digest, self._token_hash):
            self.failures += 1
            raise Unauthenticated(UNAUTHENTICATED_ADMIN)

    # -- admin commands (journaled before they are answered) ------------------------------
    def create_account(self, name, *, deposits=None, timestamp: int | None = None) -> tuple[Account, str]:
        """Open an account with one key and, optionally, its first deposits
        (``{"USDT": "100000", ...}``, as ``POST /admin/accounts`` takes them);
        ``(account, the key in clear)``. Everything is checked before anything
        changes; the account, its key and its deposits are made and journaled
        (``o``, ``k``, one ``d`` per asset) in one critical section.

        Raises:
            ValidationError: a bad name or deposit. AccountExists: the name is taken.
        """
        check_name(name)
        credits = funds.parse_deposits(self.ledger, deposits)
        self._check_serving()
        key = new_key()
        digest = key_hash(key)
        ts = timestamp or time.time_ns()
        engine = self.engine
        ticket = None
        store = self.store
        with engine.all_locks():
            account = self.registry.create(name, ts)
            self.registry.add_key(account.account_id, digest, ts)
            if store is not None:
                store.log_command("o", account.account_id, name, ts)
                ticket = store.log_command("k", account.account_id, digest, ts)
            for asset, amount in credits:
                engine.deposit(account.account_id, asset, amount)
                if store is not None:
                    ticket = self.funds_ticket = store.log_command("d", account.account_id, asset, amount, ts)
        self._durable(ticket)
        self._audit("account_created", account_id=str(account.account_id), name=name, key_id=digest[:16])
        for asset, amount in credits:
            self._audit(
                "deposit",
                account_id=str(account.account_id),
                asset=asset,
                amount=self.ledger.format(asset, amount),
            )
        log.info("account %d (%s) created, key %s", account.account_id, name, digest[:16])
        return account, key

    def transfer(self, body, withdraw: bool) -> Account:
        """``POST /admin/deposit`` (``withdraw`` False) or ``/admin/withdraw``:
        ``{"account_id", "asset", "amount"}``, journaled (``d``/``w``) in the
        critical section of the change and durable before it returns.

        Raises:
            ValidationError: a malformed body, an unknown asset, an amount that
            is not positive or has more decimals than the asset's scale, or no
            funds here (``--auth off``). AccountNotFound. InsufficientFunds:
            a withdrawal beyond the available balance (locked funds stay).
            ServiceUnavailable: the journal failed.
        """
        verb = "withdraw" if withdraw else "deposit"
        if not isinstance(body, dict):
            raise ValidationError(f'the body must be {{"account_id", "asset", "amount"}} to {verb}')
        for field in ("account_id", "asset", "amount"):
            if body.get(field) is None:
                raise ValidationError(f"{field} is required", field)
        ledger = self.ledger
        if ledger is None:
            raise ValidationError(f"this exchange runs without balances (--auth off): nothing to {verb}")
        asset = body["asset"]
        amount = ledger.parse_amount(asset, body["amount"])
        account = self.account(body["account_id"])
        self._check_serving()
        engine = self.engine
        store = self.store
        ts = time.time_ns()
        ticket = capture = None
        feed = self.balance_feed
        with engine.all_locks():
            if withdraw:
                engine.withdraw(account.account_id, asset, amount)
            else:
                engine.deposit(account.account_id, asset, amount)
            if store is not None:
                ticket = self.funds_ticket = store.log_command(
                    "w" if withdraw else "d", account.account_id, asset, amount, ts
                )
            if feed is not None and feed.watchers:
                capture = feed.capture_accounts((account.account_id,))
        try:
            self._durable(ticket)
        except BaseException:
            if capture is not None:
                feed.release(capture, deliver=False)
            raise
        if capture is not None:
            feed.release(capture)
        self._audit(
            verb, account_id=str(account.account_id), asset=asset, amount=ledger.format(asset, amount)
        )
        log.info("account %d: %s %s %s", account.account_id, verb, ledger.format(asset, amount), asset)
        return account

    def issue_key(self, account_id: int) -> tuple[Account, str]:
        """Another key for an account; ``(account, the key in clear)``.

        Raises:
            AccountNotFound: no such account.
        """
        account = self.registry.get(account_id)
        self._check_serving()
        key = new_key()
        digest = key_hash(key)
        ts = time.time_ns()
        ticket = None
        with self.engine.all_locks():
            self.registry.add_key(account.account_id, digest, ts)
            if self.store is not None:
                ticket = self.store.log_command("k", account.account_id, digest, ts)
        self._durable(ticket)
        self._audit("key_issued", account_id=str(account.account_id), key_id=digest[:16])
        log.info("account %d: key %s issued", account.account_id, digest[:16])
        return account, key

    def revoke(self, body) -> ApiKey:
        """Revoke the key ``{"api_key": KEY}`` (or ``{"key_id": ID}``, its hash
        prefix as listed by ``GET /admin/accounts``). Revoking a revoked key
        changes nothing and answers the same.

        Raises:
            ValidationError: neither field, or a malformed one.
            KeyNotFound: no such key.
        """
        if not isinstance(body, dict):
            raise ValidationError('the body must be {"api_key": "..."}', "api_key")
        if "api_key" in body:
            key = body["api_key"]
            if not well_formed(key):
                raise ValidationError("api_key is not an API key of this server", "api_key")
            digest = key_hash(key)
        elif "key_id" in body:
            key_id = body["key_id"]
            if type(key_id) is not str or not re.fullmatch(r"[0-9a-f]{8,64}", key_id):
                raise ValidationError("key_id must be 8 to 64 lowercase hex digits", "key_id")
            digest = self.registry.key_by_id(key_id).key_hash
        else:
            raise ValidationError("api_key is required", "api_key")
        self._check_serving()
        ts = time.time_ns()
        ticket = None
        with self.engine.all_locks():
            key_record, changed = self.registry.revoke(digest, ts)
            if changed and self.store is not None:
                ticket = self.store.log_command("r", digest, ts)
        self._durable(ticket)
        if changed:
            self._audit("key_revoked", account_id=str(key_record.account_id), key_id=digest[:16])
            log.info("account %d: key %s revoked", key_record.account_id, digest[:16])
            for listener in self.revoke_listeners:
                try:
                    listener(key_record)
                except Exception:
                    log.exception("a revocation listener failed")
        return key_record

    def account(self, account_id) -> Account:
        """An account by id (an int, or its decimal string from a path or body).

        Raises:
            AccountNotFound: not an id, or no such account.
        """
        if type(account_id) is str:
            if not (0 < len(account_id) <= 19 and account_id.isascii() and account_id.isdigit()):
                raise AccountNotFound(account_id)
            if account_id[0] == "0":
                raise AccountNotFound(account_id)
            account_id = int(account_id)
        elif type(account_id) is not int:
            raise AccountNotFound(account_id)
        return self.registry.get(account_id)

    def _check_serving(self) -> None:
        """Fail-stop: after a journal fault no admin change is made either.

        Raises:
            ServiceUnavailable: the store failed.
        """
        if self.store is not None and getattr(self.store, "failed", False):
            raise ServiceUnavailable(HALTED)

    def _durable(self, ticket) -> None:
        if ticket is not None:
            try:
                self.store.wait(ticket)
            except StoreError as e:  # the store failed: the change is cut from the journal
                raise ServiceUnavailable(HALTED) from e

    def _audit(self, action: str, **fields) -> None:
        if self.audit is not None:
            self.audit.admin(action, fields)

    # -- first run ---------------------------------------------------------------------
    def first_run(self, data_dir: str) -> str | None:
        """On a data dir without accounts (``on`` only): open the account
        ``demo``, funded by ``demo_deposits`` (journaled deposits, so that it
        can trade at once), and write its key to ``DATA_DIR/demo.key`` (0600).
        Returns the key file's path when it exists (made now or before), else None."""
        path = os.path.join(data_dir, DEMO_KEY_FILE)
        if not self.on:
            return None
        if len(self.registry) == 0 and not os.path.exists(path):
            _account, key = self.create_account(DEMO_ACCOUNT, deposits=self.demo_deposits())
            write_secret_file(path, key)
            return path
        return path if os.path.exists(path) else None

    def demo_deposits(self) -> dict:
        """What the demo account is given at its creation: ``DEMO_DEPOSITS`` for
        the assets it names, else a million of a quote asset and 1,000 of a base
        asset. Empty without funds."""
        if self.ledger is None:
            return {}
        quotes = {f.quote for f in self.ledger.symbols.values()}
        out = {}
        for asset in self.ledger.assets:
            default = DEMO_OTHER_QUOTE if asset in quotes else DEMO_OTHER_BASE
            out[asset] = DEMO_DEPOSITS.get(asset, default)
        return out

    def statistics(self) -> dict:
        keys = self.registry.keys.values()
        return {
            "mode": self.mode,
            "accounts": len(self.registry),
            "keys_active": sum(1 for k in keys if k.revoked is None),
            "keys_revoked": sum(1 for k in keys if k.revoked is not None),
            "refused_credentials": self.failures,
        }


def account_dict(account: Account | None, ledger=None) -> dict:
    """``GET /account``, the ``balance`` event and an element of ``GET
    /admin/accounts``: the account and its balances (``api.funds.balances_list``;
    empty without funds). None: the shared account of ``--auth off``. Call
    holding the engine's lock for a consistent view."""
    if account is None:
        return {"account_id": "0", "name": "shared", "balances": []}
    return {
        "account_id": str(account.account_id),
        "name": account.name,
        "balances": funds.balances_list(ledger, account.account_id),
    }


def admin_account_dict(account: Account, ledger=None) -> dict:
    """An element of ``GET /admin/accounts``: ``account_dict`` plus its keys by
    ``key_id`` (never the key), so that an admin can revoke one by id."""
    out = account_dict(account, ledger)
    out["keys"] = [
        {"key_id": k.key_id, "created": _iso(k.created), "revoked": k.revoked is not None}
        for k in account.keys
    ]
    return out


def _iso(ns: int) -> str:
    from api.formatting import iso

    return iso(ns)


def first_run_text(
    url: str, key_path: str | None, token_path: str, created: bool, deposits: dict | None = None
) -> str:
    """What the server prints at start with ``--auth on``: how to trade now.
    ``deposits`` (asset -> amount): what the demo account was funded with."""
    lines = ["", "Trading needs an API key (--auth on)."]
    if key_path is not None:
        rel = os.path.relpath(key_path)
        shown = rel if not rel.startswith("..") else key_path
        if created:
            lines.append(f"  A demo account was created; its key is in {shown} (mode 0600).")
        else:
            lines.append(f"  The demo account's key is in {shown}.")
        if created and deposits:
            funded = ", ".join(f"{amount} {asset}" for asset, amount in deposits.items())
            lines.append(f"  It was funded with {funded} (deposits, in the journal).")
        lines += [
            f"  Page:  {url}/  -> paste the key (cat {shown}) into the login box.",
            "  curl:",
            f"    curl -s -X POST {url}/order -H 'Content-Type: application/json' \\",
            f'         -H "X-API-Key: $(cat {shown})" \\',
            '         -d \'{"symbol":"BTC-USDT","side":"buy","order_type":"limit","price":"30000.00","quantity":"0.01"}\'',
            f'    curl -s {url}/account -H "X-API-Key: $(cat {shown})"    # balances',
        ]
    token = os.path.relpath(token_path)
    if token.startswith(".."):
        token = token_path
    lines += [
        "  More accounts: python -m api.admin (reads the admin token), or",
        f"    curl -s -X POST {url}/admin/accounts -H 'Content-Type: application/json' \\",
        f'         -H "X-Admin-Token: $(cat {token})" -d \'{{"name":"alice","deposits":{{"USDT":"100000"}}}}\'',
        "  Fund an account: python -m api.admin deposit ACCOUNT_ID USDT 1000 (or POST /admin/deposit).",
        "  --auth off serves without keys (one shared account, no balances).",
        "",
    ]
    return "\n".join(lines)
