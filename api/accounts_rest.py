"""REST routes of accounts: the caller's own (``X-API-Key``) and the admin's
(``X-Admin-Token``). Thin adapters over ``Exchange`` and ``api.auth.Auth``.

=========  ===================================  ===============================================
blueprint  route                                answer
=========  ===================================  ===============================================
account    GET  /account                        ``{"account_id", "name", "balances"}``
account    GET  /orders                         ``?symbol=S&status=open|all&limit=N``:
                                                ``{"orders": [report, ...]}``, newest first
account    GET  /fills                          ``?symbol=S&limit=N``: ``{"fills": [...]}``
account    POST /cancel_all                     ``{"symbol"}`` or ``{}``: ``{"cancelled": [...]}``
admin      POST /admin/accounts                 201 ``{"account_id", "name", "api_key", "balances"}``
admin      GET  /admin/accounts                 ``{"accounts": [...], "fees": []}``
admin      POST /admin/accounts/<id>/keys       201 ``{"account_id", "api_key"}``
admin      POST /admin/keys/revoke              ``{"api_key"}`` (or ``{"key_id"}``): ``{"revoked": true}``
=========  ===================================  ===============================================

Credentials are checked before the body is read, so a request without them
learns nothing about its body's validity. Balances, deposits and withdrawals
belong to the funds issue: ``balances`` and ``fees`` are empty lists until
then, and a non-empty ``deposits`` is refused (``400 VALIDATION_ERROR``,
field ``deposits``) rather than silently ignored.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, request

from api.auth import Auth, account_dict, admin_account_dict
from api.errors import json_response
from api.parsing import MAX_ORDER_BODY, parse_count, read_json_body
from api.service import DEFAULT_LIST, MAX_LIST, Exchange
from engine.errors import ValidationError
from engine.symbols import asset_scales

account_bp = Blueprint("account", __name__)
admin_bp = Blueprint("admin", __name__)


def _auth() -> Auth:
    return current_app.extensions["auth"]


def _exchange() -> Exchange:
    return current_app.extensions["exchange"]


def _caller():
    return _auth().caller(request)


# -- public: the assets and their scale ----------------------------------------------------
@account_bp.get("/assets")
def assets():
    engine = _exchange().engine
    scales = asset_scales(m.spec for m in engine.markets.values())
    return json_response({"assets": [{"asset": a, "scale": s} for a, s in scales.items()]})


# -- the caller's account ---------------------------------------------------------------
@account_bp.get("/account")
def account():
    return json_response(account_dict(_caller()))


@account_bp.get("/orders")
def list_orders():
    caller = _caller()
    args = request.args
    limit = parse_count(args, "limit", DEFAULT_LIST, MAX_LIST)
    return json_response(_exchange().list_orders(caller, args.get("symbol"), args.get("status"), limit))


@account_bp.get("/fills")
def list_fills():
    caller = _caller()
    args = request.args
    limit = parse_count(args, "limit", DEFAULT_LIST, MAX_LIST)
    return json_response(_exchange().list_fills(caller, args.get("symbol"), limit))


@account_bp.post("/cancel_all")
def cancel_all():
    caller = _caller()
    body = read_json_body(request, MAX_ORDER_BODY)
    return json_response(_exchange().cancel_all(body, caller))


# -- admin ----------------------------------------------------------------------------------
@admin_bp.before_request
def _admin_only():
    _auth().check_admin(request)


@admin_bp.post("/admin/accounts")
def create_account():
    body = read_json_body(request, MAX_ORDER_BODY)
    if not isinstance(body, dict):
        raise ValidationError('the body must be {"name": "..."}')
    deposits = body.get("deposits")
    if deposits is not None:
        if not isinstance(deposits, dict):
            raise ValidationError("deposits must be an object of asset -> amount", "deposits")
        if deposits:
            raise ValidationError(
                "deposits are not supported yet (balances come with funds); create the account without them",
                "deposits",
            )
    if body.get("name") is None:
        raise ValidationError("name is required", "name")
    created, key = _auth().create_account(body["name"])
    answer = account_dict(created)
    answer = {"account_id": answer["account_id"], "name": answer["name"], "api_key": key, "balances": []}
    return json_response(answer, 201)


@admin_bp.get("/admin/accounts")
def list_accounts():
    registry = _auth().registry
    accounts = [admin_account_dict(a) for a in list(registry.accounts.values())]
    return json_response({"accounts": accounts, "fees": []})


@admin_bp.post("/admin/accounts/<account_id>/keys")
def issue_key(account_id: str):
    auth = _auth()
    target = auth.account(account_id)
    _account, key = auth.issue_key(target.account_id)
    return json_response({"account_id": str(target.account_id), "api_key": key}, 201)


@admin_bp.post("/admin/keys/revoke")
def revoke_key():
    body = read_json_body(request, MAX_ORDER_BODY)
    _auth().revoke(body)
    return json_response({"revoked": True})


def register(app: Flask) -> None:
    app.register_blueprint(account_bp)
    app.register_blueprint(admin_bp)
