"""Accounts and their API keys: a pure registry (no IO, no hashing, no clock).

Model
    ``Account``   ``account_id`` (an int issued in order from 1, never reused),
                  a unique ``name`` (1-64 characters of ``[A-Za-z0-9_.-]``),
                  the creation time and its keys. Balances (the funds issue)
                  belong here too: one more field per account, snapshotted
                  with it.
    ``ApiKey``    the *hash* of one key (64 lowercase hex digits; the api
                  layer hashes, see ``api/auth.py``), its account, when it
                  was created and, once revoked, when. A key is never stored
                  or passed here in clear.

Commands (``create``, ``add_key``, ``revoke``) take the timestamp and, for
replay, the id they are to issue, so that replaying the journal gives the same
registry (the determinism rule of ``engine.matcher``). Each raises an
``EngineError`` and changes nothing when refused.

Concurrency: mutations are rare (admin requests, replay) and the caller
serialises them with the symbols' critical sections (``MatchingEngine.
all_locks``): a snapshot then sees a registry that matches the journal record
it is taken at. Lookups (``authenticate``, ``get``) are single dict reads,
atomic under the GIL, and need no lock.

Runtime complexity: every command and lookup O(1) (``add_key`` also checks
the hash is new: O(1)); ``snapshot``/``restore``/``check`` O(accounts + keys).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from engine.errors import AccountExists, AccountNotFound, KeyNotFound, ValidationError

NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
KEY_HASH_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(slots=True)
class ApiKey:
    key_hash: str
    account_id: int
    created: int
    revoked: int | None = None

    @property
    def key_id(self) -> str:
        """A short public handle of the key (the first 16 hex digits of its
        hash): what logs, audit lines and admin listings show."""
        return self.key_hash[:16]


@dataclass(slots=True)
class Account:
    account_id: int
    name: str
    created: int
    keys: list[ApiKey] = field(default_factory=list)


def check_name(name) -> str:
    """The name if valid. Raises ValidationError (field ``name``)."""
    if type(name) is not str or NAME_RE.fullmatch(name) is None:
        raise ValidationError("name must be 1 to 64 characters of A-Z a-z 0-9 _ . -", "name")
    return name


class AccountRegistry:
    """Every account and key of the exchange (see the module docstring)."""

    def __init__(self) -> None:
        self.accounts: dict[int, Account] = {}
        self.by_name: dict[str, Account] = {}
        self.keys: dict[str, ApiKey] = {}  # hash -> key (revoked ones included)
        self._ids = itertools.count(1)
        self._last_id = 0

    # -- commands ------------------------------------------------------------------
    def create(self, name: str, timestamp: int, account_id: int | None = None) -> Account:
        """Open an account. ``account_id``: for replay (the id the journal has).

        Raises:
            ValidationError: a name out of range.
            AccountExists: the name is taken.
        """
        check_name(name)
        if name in self.by_name:
            raise AccountExists(name)
        if account_id is None:
            account_id = next(self._ids)
        else:
            if type(account_id) is not int or account_id <= self._last_id:
                raise ValidationError(f"account id {account_id!r} is not after {self._last_id}", "account_id")
            self._ids = itertools.count(account_id + 1)
        self._last_id = account_id
        account = Account(account_id, name, timestamp)
        self.accounts[account_id] = account
        self.by_name[name] = account
        return account

    def add_key(self, account_id: int, key_hash: str, timestamp: int) -> ApiKey:
        """Give the account one more key (by its hash).

        Raises:
            AccountNotFound: no such account.
            ValidationError: not a 64-hex-digit hash, or a hash already issued.
        """
        account = self.get(account_id)
        if type(key_hash) is not str or KEY_HASH_RE.fullmatch(key_hash) is None:
            raise ValidationError("a key hash is 64 lowercase hex digits", "key_hash")
        if key_hash in self.keys:
            raise ValidationError("this key was issued already", "key_hash")
        key = ApiKey(key_hash, account.account_id, timestamp)
        account.keys.append(key)
        self.keys[key_hash] = key
        return key

    def revoke(self, key_hash: str, timestamp: int) -> tuple[ApiKey, bool]:
        """Revoke a key: ``(key, True)``, or ``(key, False)`` if it was revoked
        already (then nothing changes).

        Raises:
            KeyNotFound: no key has this hash.
        """
        key = self.keys.get(key_hash) if type(key_hash) is str else None
        if key is None:
            raise KeyNotFound()
        if key.revoked is not None:
            return key, False
        key.revoked = timestamp
        return key, True

    # -- queries -------------------------------------------------------------------
    def get(self, account_id) -> Account:
        """The account. O(1). Raises AccountNotFound."""
        account = self.accounts.get(account_id) if type(account_id) is int else None
        if account is None:
            raise AccountNotFound(account_id)
        return account

    def authenticate(self, key_hash: str) -> tuple[Account, ApiKey] | None:
        """The account and key of an active (issued, not revoked) key hash, or
        None. O(1): one dict lookup (see ``api/auth.py`` on why a lookup by the
        hash of a high-entropy key leaks nothing through its timing)."""
        key = self.keys.get(key_hash)
        if key is None or key.revoked is not None:
            return None
        return self.accounts[key.account_id], key

    def key_by_id(self, key_id: str) -> ApiKey:
        """The key whose ``key_id`` (hash prefix) this is. O(keys).

        Raises:
            KeyNotFound: none, or more than one (field ``key_id``).
        """
        found = [k for h, k in self.keys.items() if h.startswith(key_id)] if key_id else []
        if len(found) != 1:
            raise KeyNotFound("key_id")
        return found[0]

    def __len__(self) -> int:
        return len(self.accounts)

    # -- state transfer --------------------------------------------------------------
    def snapshot(self) -> dict:
        """Plain data: ``{"last_id", "accounts": [[id, name, created, [[hash, created,
        revoked], ...]], ...]}``. O(accounts + keys)."""
        return {
            "last_id": self._last_id,
            "accounts": [
                [a.account_id, a.name, a.created, [[k.key_hash, k.created, k.revoked] for k in a.keys]]
                for a in self.accounts.values()
            ],
        }

    def restore(self, state: dict | None) -> None:
        """Replace the registry by a ``snapshot()`` (None: empty). O(n)."""
        self.__init__()
        if not state:
            return
        for account_id, name, created, keys in state["accounts"]:
            account = Account(account_id, name, created)
            self.accounts[account_id] = account
            self.by_name[name] = account
            for key_hash, key_created, revoked in keys:
                key = ApiKey(key_hash, account_id, key_created, revoked)
                account.keys.append(key)
                self.keys[key_hash] = key
        self._last_id = state["last_id"]
        self._ids = itertools.count(self._last_id + 1)

    def check(self) -> None:
        """Assert the registry's invariants. O(n)."""
        assert len(self.by_name) == len(self.accounts)
        n_keys = 0
        for account_id, account in self.accounts.items():
            assert account.account_id == account_id <= self._last_id
            assert self.by_name[account.name] is account
            assert NAME_RE.fullmatch(account.name)
            for key in account.keys:
                assert key.account_id == account_id
                assert self.keys[key.key_hash] is key
                n_keys += 1
        assert n_keys == len(self.keys)
