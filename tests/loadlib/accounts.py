"""API keys for the load tools, when the server wants them (``--auth on``).

Every tool that sends orders adds :func:`add_options` to its parser and calls
:func:`resolve_keys` once before the load:

* GET /account without a key answers 200 (``--auth off``: one shared account) or
  404 (a server without accounts): no key is needed, none is sent (``[None]``);
* it answers 401 (``--auth on``): the keys are ``--api-key`` (repeatable: one
  account each) and the lines of ``--api-key-file`` (which keeps them out of
  ``ps``), else the tool makes ``--accounts`` accounts of its own through
  the admin endpoints with the admin token of ``--data-dir`` (default ``./data``) or
  ``--admin-token-file``, named ``load-<tag>-<n>``, funded at creation with
  ``api.admin.LOAD_DEPOSIT`` of every asset (far more than a run spends: a load
  never meets ``INSUFFICIENT_FUNDS`` by accident), and revokes their keys when
  the run is over (:meth:`Keys.close`). Accounts given by ``--api-key`` must be
  funded by whoever made them.

Orders are spread over the accounts in turn, so that with two or more the
orders of the load trade with each other as they do without accounts (with a
single account the server's self-trade prevention cancels whatever would
trade with an own order). A cancel goes out with the key of the order's account.
Keys never appear in the reports or in the JSON summaries.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_admin():
    """``api/admin.py`` by its path: in the tools' ``sys.path`` (``tests/`` first),
    ``api`` is the ``tests/api`` package."""
    name = "matchbook_api_admin"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "api", "admin.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_admin = _load_admin()
AdminClient, AdminError, read_admin_token = _admin.AdminClient, _admin.AdminError, _admin.read_admin_token

DEFAULT_ACCOUNTS = 4


class KeysError(Exception):
    """Keys are needed and cannot be had; the message says what to pass."""


def add_options(ap, accounts_default: int = DEFAULT_ACCOUNTS) -> None:
    """``--api-key``, ``--data-dir``, ``--admin-token-file``, ``--accounts``."""
    g = ap.add_argument_group("accounts (servers with --auth on)")
    g.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="an account's API key; repeat it for several accounts (orders go to them in turn)",
    )
    g.add_argument("--api-key-file", metavar="FILE", help="API keys, one a line (one account each)")
    g.add_argument(
        "--data-dir",
        default="data",
        help="the server's data dir: with its admin.token the tool makes its own accounts (default ./data)",
    )
    g.add_argument("--admin-token-file", help="the admin token's file, when the server was given one")
    g.add_argument(
        "--accounts",
        type=int,
        default=accounts_default,
        help=f"accounts to make with the admin token (default {accounts_default})",
    )


def auth_required(host: str, port: int, timeout: float = 5.0) -> bool:
    """True when GET /account without a key answers 401 (the server has ``--auth on``).

    Raises:
        OSError: the server cannot be reached.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/account")
        response = conn.getresponse()
        response.read()
        return response.status == 401
    finally:
        conn.close()


def check_key(host: str, port: int, key: str, timeout: float = 5.0) -> dict | None:
    """GET /account with ``key``: the account, or None when the key is refused."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/account", headers={"X-API-Key": key})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None
    finally:
        conn.close()


class Keys:
    """The keys of a run: ``keys`` is ``[None]`` when the server wants none."""

    def __init__(self, keys: list, admin: AdminClient | None = None, names: list[str] | None = None):
        self.keys = keys
        self.admin = admin
        self.names = names or []
        self.made = list(keys) if admin is not None else []

    @property
    def needed(self) -> bool:
        return self.keys != [None]

    def describe(self) -> str:
        if not self.needed:
            return "no API key (the server does not ask for one)"
        made = f", made with the admin token ({', '.join(self.names)})" if self.made else ""
        return f"{len(self.keys)} account(s){made}"

    def close(self) -> None:
        """Revoke the keys this run made (the accounts stay, with their orders)."""
        for key in self.made:
            try:
                self.admin.revoke_key(key)
            except AdminError:
                break
        self.made = []


def resolve_keys(args, host: str, port: int, url: str, tag: str) -> Keys:
    """The keys the run sends (see the module docstring).

    Raises:
        KeysError: the server wants keys and none can be had, or a given key is refused.
        OSError: the server cannot be reached.
    """
    given = list(args.api_key or [])
    if getattr(args, "api_key_file", None):
        try:
            with open(args.api_key_file, encoding="utf-8") as f:
                given += [line.strip() for line in f if line.strip()]
        except OSError as exc:
            raise KeysError(f"cannot read --api-key-file {args.api_key_file}: {exc.strerror}") from None
    if not auth_required(host, port):
        return Keys([None])
    if given:
        for i, key in enumerate(given):
            if check_key(host, port, key) is None:
                raise KeysError(f"API key number {i + 1} is not accepted by the server (GET /account: 401)")
        return Keys(given)
    if args.accounts < 1:
        raise KeysError("--accounts must be at least 1")
    try:
        token = read_admin_token(args.data_dir, args.admin_token_file)
    except AdminError as exc:
        raise KeysError(
            "the server wants API keys (--auth on): pass --api-key KEY (repeat it for several "
            "accounts), or the server's --data-dir / --admin-token-file so that the tool makes "
            f"its own accounts ({exc})"
        ) from None
    try:
        admin = AdminClient(url, token, allow_remote=getattr(args, "allow_remote", False))
        deposits = admin.load_deposits()  # funded far beyond what a run spends (api.admin.LOAD_DEPOSIT)
        keys, names = [], []
        for i in range(args.accounts):
            name = f"load-{tag}-{i + 1}"
            keys.append(admin.create_account(name, deposits)["api_key"])
            names.append(name)
    except AdminError as exc:
        raise KeysError(f"could not make the load's accounts through the admin endpoints: {exc}") from None
    return Keys(keys, admin, names)


def write_key_file(keys: list[str], directory: str) -> str:
    """The keys in a new file only its owner can read (for a tool that runs another)."""
    fd, path = tempfile.mkstemp(prefix=".keys-", dir=directory)  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(k + "\n" for k in keys))
    return path


def redact_argv(argv: list[str]) -> list[str]:
    """``argv`` with every ``--api-key`` value replaced by ``***`` (for reports)."""
    out, hide = [], False
    for a in argv:
        if hide:
            out.append("***")
            hide = False
        elif a == "--api-key":
            out.append(a)
            hide = True
        elif a.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            out.append(a)
    return out
