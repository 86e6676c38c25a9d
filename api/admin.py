"""The admin command line: accounts and API keys over the server's admin endpoints.

    python -m api.admin create-account alice            # prints the new account's key, once
    python -m api.admin create-account bob --deposit USDT=100000 --deposit BTC=2
    python -m api.admin list-accounts                   # balances (available+locked) and fees
    python -m api.admin deposit ACCOUNT_ID USDT 1000.5
    python -m api.admin withdraw ACCOUNT_ID BTC 0.25    # at most what is available
    python -m api.admin new-key ACCOUNT_ID              # another key for the account, once
    python -m api.admin revoke-key < key.txt            # the key from stdin (or --key-file)
    python -m api.admin revoke-key --key-id KEY_ID      # a lost key, by the id list-accounts shows

Options before the command: ``--url`` (default http://127.0.0.1:5000), ``--data-dir``
(default ``./data``, where the server keeps ``admin.token``) or ``--admin-token-file``
(the server's own ``--admin-token-file``), ``--json`` (answers as JSON, for scripts).

It is a plain HTTP client of the contract's admin endpoints (``X-Admin-Token``):
stdlib only, so ``tools/`` and the load tools import :class:`AdminClient` and
:func:`read_admin_token` without the server's dependencies.

Secrets:

* the admin token is read from its file, never from the command line, and never printed;
* a new API key is printed once (or written to ``--key-out FILE``, mode 0600) and
  nowhere else; ``revoke-key`` reads the key from stdin or a file, never from argv,
  so that it stays out of ``ps`` and the shell's history;
* the token and keys only travel to a loopback server or over https, unless
  ``--allow-remote`` says that the plain-http network is yours.

Exit status: 0 done, 1 the server refused (its error code and message are printed),
2 usage error, no token, or the server is unreachable (a withdrawal beyond the
available balance is the server's refusal, ``INSUFFICIENT_FUNDS``: 1).
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import ipaddress
import json
import os
import sys
from decimal import Decimal
from urllib.parse import quote, urlsplit

DEFAULT_URL = "http://127.0.0.1:5000"
# What a load tool deposits of every asset into each account it makes: far more
# than any run spends (1e9 BTC at 30,000 is 3e13 USDT; still exact at every
# scale), so that a load never meets INSUFFICIENT_FUNDS by accident.
LOAD_DEPOSIT = "1000000000000"
DEFAULT_DATA_DIR = "data"
TOKEN_FILE = "admin.token"


class AdminError(Exception):
    """A failure to report to the user: ``status`` 0 for no answer, else the HTTP status."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def read_admin_token(data_dir: str = DEFAULT_DATA_DIR, token_file: str | None = None) -> str:
    """The admin token: from ``token_file`` if given, else ``DATA_DIR/admin.token``.

    Raises:
        AdminError: the file is missing, unreadable or empty (the message says what to do).
    """
    path = token_file or os.path.join(data_dir, TOKEN_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except FileNotFoundError:
        raise AdminError(
            f"no admin token at {path}: the server creates it at its first start on a data dir "
            "(give that dir with --data-dir, or the server's --admin-token-file)"
        ) from None
    except OSError as exc:
        raise AdminError(f"cannot read the admin token at {path}: {exc.strerror}") from None
    if not token:
        raise AdminError(f"the admin token file {path} is empty")
    return token


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost`` (names are not resolved)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class AdminClient:
    """The admin endpoints of one server, one request per call (a fresh connection).

    Every method returns the decoded JSON answer of a 2xx response and raises
    :class:`AdminError` otherwise (``status`` and ``code`` from the contract's error
    envelope; status 0 when the server could not be reached).
    """

    def __init__(self, url: str, token: str, timeout: float = 10.0, allow_remote: bool = False) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AdminError(f"not an http(s) URL: {url!r}")
        if parts.scheme == "http" and not allow_remote and not is_loopback(parts.hostname):
            raise AdminError(
                f"refusing to send the admin token in clear to {parts.hostname}: use https, "
                "a loopback address, or --allow-remote on a network you own"
            )
        self.scheme = parts.scheme
        self.host = parts.hostname
        try:
            self.port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise AdminError(f"bad port in {url!r}") from None
        self.prefix = parts.path.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        headers = {"X-Admin-Token": self.token}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            where = f"{self.scheme}://{self.host}:{self.port}"
            raise AdminError(f"the server at {where} is unreachable ({exc or type(exc).__name__})") from None
        finally:
            conn.close()
        try:
            data = json.loads(raw, parse_float=Decimal) if raw else None
        except ValueError:
            data = None
        if 200 <= response.status < 300:
            return data if isinstance(data, dict) else {}
        err = data.get("error") if isinstance(data, dict) else None
        if isinstance(err, dict):
            code = str(err.get("code", ""))
            message = str(err.get("message", ""))
            if err.get("field"):
                message = f"{message} (field {err['field']})"
        else:
            code, message = f"HTTP_{response.status}", f"{response.status} {response.reason}"
        if response.status == 401:
            message += (
                ": the server did not accept the admin token (is it the token of this server's data dir?)"
            )
        elif response.status == 404 and code not in ("ACCOUNT_NOT_FOUND",):
            message += ": does this server have accounts (it needs the admin endpoints)?"
        raise AdminError(message, response.status, code)

    def create_account(self, name: str, deposits: dict | None = None) -> dict:
        """POST /admin/accounts: ``{"account_id", "name", "api_key", "balances"}``;
        ``deposits`` (asset -> decimal string) funds it in the same command."""
        body = {"name": name} if not deposits else {"name": name, "deposits": deposits}
        return self.request("POST", "/admin/accounts", body)

    def deposit(self, account_id, asset: str, amount: str) -> dict:
        """POST /admin/deposit: ``{"account_id", "balances"}``."""
        return self.request(
            "POST", "/admin/deposit", {"account_id": str(account_id), "asset": asset, "amount": str(amount)}
        )

    def withdraw(self, account_id, asset: str, amount: str) -> dict:
        """POST /admin/withdraw: ``{"account_id", "balances"}`` (400 INSUFFICIENT_FUNDS
        beyond what is available)."""
        return self.request(
            "POST", "/admin/withdraw", {"account_id": str(account_id), "asset": asset, "amount": str(amount)}
        )

    def assets(self) -> list[str]:
        """GET /assets (public): the asset names."""
        return [a["asset"] for a in self.request("GET", "/assets").get("assets", [])]

    def load_deposits(self, amount: str = LOAD_DEPOSIT) -> dict:
        """Deposits for the accounts a load tool makes: ``amount`` of every
        asset the server has (none when it has no ``/assets``: an older server)."""
        try:
            return dict.fromkeys(self.assets(), amount)
        except AdminError as exc:
            if exc.status == 404:
                return {}
            raise

    def list_accounts(self) -> dict:
        """GET /admin/accounts: ``{"accounts": [...], "fees": [...]}``."""
        return self.request("GET", "/admin/accounts")

    def new_key(self, account_id: str) -> dict:
        """POST /admin/accounts/<id>/keys: ``{"account_id", "api_key"}``."""
        return self.request("POST", f"/admin/accounts/{quote(str(account_id), safe='')}/keys")

    def revoke_key(self, api_key: str) -> dict:
        """POST /admin/keys/revoke: ``{"revoked": true}``."""
        return self.request("POST", "/admin/keys/revoke", {"api_key": api_key})

    def revoke_key_id(self, key_id: str) -> dict:
        """POST /admin/keys/revoke by the key's public id (as listed): ``{"revoked": true}``."""
        return self.request("POST", "/admin/keys/revoke", {"key_id": key_id})


def write_secret(path: str, secret: str) -> None:
    """Write ``secret`` to a new file only its owner can read (never over an existing one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")


def read_key(key_file: str | None) -> str:
    """An API key from ``key_file``, else from stdin (asked without echo on a terminal)."""
    if key_file and key_file != "-":
        try:
            with open(key_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise AdminError(f"cannot read {key_file}: {exc.strerror}") from None
    elif sys.stdin.isatty():
        text = getpass.getpass("API key to revoke (not echoed): ")
    else:
        text = sys.stdin.read()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise AdminError("expected exactly one API key (one line) to revoke")
    return lines[0]


def _balances_text(balances) -> str:
    """``USDT 100.5+20.0, BTC 1.0+0`` of the non-zero balances; ``-`` if none."""

    def zero(value) -> bool:
        try:
            return Decimal(str(value)) == 0
        except ArithmeticError:
            return False

    shown = [b for b in balances or () if not (zero(b.get("available")) and zero(b.get("locked")))]
    if not shown:
        return "-"
    return ", ".join(f"{b.get('asset')} {b.get('available')}+{b.get('locked')}" for b in shown)


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=1, default=str))


def _show_key(args, answer: dict, what: str) -> None:
    key = answer.get("api_key", "")
    if args.key_out:
        try:
            write_secret(args.key_out, key)
        except OSError as exc:
            # The key exists on the server now: show it rather than lose it.
            print(f"cannot write {args.key_out} ({exc.strerror}); the key follows", file=sys.stderr)
            args.key_out = None
    if args.json:
        out = dict(answer)
        if args.key_out:
            out["api_key"] = None
            out["api_key_file"] = args.key_out
        _print_json(out)
        return
    name = f"{answer['name']} " if answer.get("name") else ""
    print(f"{what}: {name}(account_id {answer.get('account_id')})")
    if args.key_out:
        print(f"API key written to {args.key_out} (mode 0600); it is not shown again")
    else:
        print(f"API key: {key}")
        print("The key is shown once: the server keeps only its hash. Send it as X-API-Key.")


def _check_key_out(args) -> None:
    """Refuse an existing --key-out file before the server makes a key nobody could store."""
    if args.key_out and os.path.lexists(args.key_out):
        raise AdminError(f"{args.key_out} exists; give a new file for the key")


def _parse_deposits(items) -> dict:
    out = {}
    for item in items or ():
        asset, sep, amount = item.partition("=")
        if not sep or not asset or not amount:
            raise AdminError(f"--deposit takes ASSET=AMOUNT, not {item!r}")
        out[asset] = amount
    return out


def cmd_create_account(client: AdminClient, args) -> None:
    _check_key_out(args)
    answer = client.create_account(args.name, _parse_deposits(args.deposit))
    _show_key(args, answer, "account created")
    if not args.json and args.deposit:
        print(f"balances (available+locked): {_balances_text(answer.get('balances'))}")


def _cmd_transfer(client: AdminClient, args, withdraw: bool) -> None:
    call = client.withdraw if withdraw else client.deposit
    answer = call(args.account_id, args.asset, args.amount)
    if args.json:
        _print_json(answer)
        return
    verb = "withdrew" if withdraw else "deposited"
    print(f"{verb} {args.amount} {args.asset} (account_id {answer.get('account_id')})")
    print(f"balances (available+locked): {_balances_text(answer.get('balances'))}")


def cmd_deposit(client: AdminClient, args) -> None:
    _cmd_transfer(client, args, False)


def cmd_withdraw(client: AdminClient, args) -> None:
    _cmd_transfer(client, args, True)


def cmd_new_key(client: AdminClient, args) -> None:
    _check_key_out(args)
    _show_key(args, client.new_key(args.account_id), "new key for account")


def cmd_list_accounts(client: AdminClient, args) -> None:
    answer = client.list_accounts()
    if args.json:
        _print_json(answer)
        return
    accounts = answer.get("accounts") or []
    width = max([len(str(a.get("account_id", ""))) for a in accounts] + [len("account_id")])
    print(f"{'account_id':<{width}}  {'name':<24}  {'active keys':<36}  balances (available+locked)")
    for a in accounts:
        keys = a.get("keys") or []
        active = ",".join(str(k.get("key_id")) for k in keys if not k.get("revoked")) or "-"
        print(
            f"{a.get('account_id')!s:<{width}}  {a.get('name')!s:<24}  {active:<36}  "
            f"{_balances_text(a.get('balances'))}"
        )
    print(f"{len(accounts)} account(s)")
    if answer.get("fees"):
        print(f"fees: {_balances_text(answer['fees'])}")


def cmd_revoke_key(client: AdminClient, args) -> None:
    if args.key_id and args.key_file:
        raise AdminError("give --key-id or --key-file, not both")
    answer = client.revoke_key_id(args.key_id) if args.key_id else client.revoke_key(read_key(args.key_file))
    if args.json:
        _print_json(answer)
    else:
        print("key revoked" if answer.get("revoked") else f"answer: {answer}")


def _common_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """The connection options; accepted before and after the command (the subcommands'
    copies default to SUPPRESS so that they never overwrite what came before)."""

    def d(value):
        return value if defaults else argparse.SUPPRESS

    p.add_argument("--url", default=d(DEFAULT_URL), help=f"the server (default {DEFAULT_URL})")
    p.add_argument(
        "--data-dir",
        default=d(DEFAULT_DATA_DIR),
        help="the server's data dir, which holds admin.token (default ./data)",
    )
    p.add_argument(
        "--admin-token-file", default=d(None), help="the admin token's file, when the server was given one"
    )
    p.add_argument("--json", action="store_true", default=d(False), help="print the answers as JSON")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        default=d(False),
        help="allow plain http to a non-loopback host",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m api.admin",
        description="Accounts and API keys of a running server (its admin endpoints).",
        epilog="Exit status: 0 done, 1 refused by the server, 2 usage error, no token or no server.",
    )
    _common_options(ap, defaults=True)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    key_out = {"metavar": "FILE", "help": "write the key to FILE (mode 0600) instead of printing it"}

    p = sub.add_parser("create-account", help="create an account and its first API key")
    p.add_argument("name", help="1-64 characters of A-Z a-z 0-9 _ . -")
    p.add_argument("--key-out", **key_out)
    p.add_argument(
        "--deposit",
        action="append",
        metavar="ASSET=AMOUNT",
        help="fund the account at its creation (repeat for several assets)",
    )
    p.set_defaults(func=cmd_create_account)

    p = sub.add_parser("list-accounts", help="every account with its balances")
    p.set_defaults(func=cmd_list_accounts)

    for name, func, what in (
        ("deposit", cmd_deposit, "credit an account's available balance"),
        ("withdraw", cmd_withdraw, "debit an account's available balance (never locked funds)"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("account_id")
        p.add_argument("asset", help="e.g. USDT (GET /assets lists them)")
        p.add_argument("amount", help="a positive decimal within the asset's scale, e.g. 1000.5")
        p.set_defaults(func=func)

    p = sub.add_parser("new-key", help="another API key for an account")
    p.add_argument("account_id")
    p.add_argument("--key-out", **key_out)
    p.set_defaults(func=cmd_new_key)

    p = sub.add_parser(
        "revoke-key", help="revoke a key, read from stdin or --key-file (never from the command line)"
    )
    p.add_argument("--key-file", metavar="FILE", help="a file holding the key ('-' or none: stdin)")
    p.add_argument("--key-id", metavar="KEY_ID", help="revoke by the key's id (list-accounts shows them)")
    p.set_defaults(func=cmd_revoke_key)
    for p in sub.choices.values():
        _common_options(p, defaults=False)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        token = read_admin_token(args.data_dir, args.admin_token_file)
        client = AdminClient(args.url, token, allow_remote=args.allow_remote)
        args.func(client, args)
    except AdminError as exc:
        code = f" ({exc.code})" if exc.code else ""
        print(f"error{code}: {exc}", file=sys.stderr)
        return 1 if exc.status else 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
