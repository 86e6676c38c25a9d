"""REST routes of accounts: the caller's own (``X-API-Key``) and the admin's
(``X-Admin-Token``). Thin adapters over ``Exchange`` and ``api.auth.Auth``.

=========  ===================================  ===============================================
blueprint  route                                answer
=========  ===================================  ===============================================
account    GET  /assets                         ``{"assets": [{"asset", "scale"}]}`` (public)
account    GET  /account                        ``{"account_id", "name", "balances"}``
account    GET  /orders                         ``?symbol=S&status=open|all&limit=N``:
                                                ``{"orders": [report, ...]}``, newest first
account    GET  /fills                          ``?symbol=S&limit=N``: ``{"fills": [...]}``
account    POST /cancel_all                     ``{"symbol"}`` or ``{}``: ``{"cancelled": [...]}``
admin      POST /admin/accounts                 ``{"name", "deposits"?}``: 201 ``{"account_id",
                                                "name", "api_key", "balances"}``
admin      GET  /admin/accounts                 ``{"accounts": [...], "fees": balances}``
admin      POST /admin/accounts/<id>/keys       201 ``{"account_id", "api_key"}``
admin      POST /admin/keys/revoke              ``{"api_key"}`` (or ``{"key_id"}``): ``{"revoked": true}``
admin      POST /admin/deposit                  ``{"account_id", "asset", "amount"}``:
                                                ``{"account_id", "balances"}``
admin      POST /admin/withdraw                 the same; beyond ``available``: 400
                                                ``INSUFFICIENT_FUNDS``
=========  ===================================  ===============================================

Credentials are checked before the body is read, so a request without them
learns nothing about its body's validity. Balances are formatted by
``api.funds.balances_list`` (exactly the asset's scale decimals); without
funds (``--auth off``) they are empty lists, and deposits, withdrawals and a
non-empty ``deposits`` are refused (``400 VALIDATION_ERROR``).
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, request

from api.auth import Auth
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
    return json_response(_exchange().account(_caller()))


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
    if body.get("name") is None:
        raise ValidationError("name is required", "name")
    created, key = _auth().create_account(body["name"], deposits=body.get("deposits"))
    answer = _exchange().account(created)
    answer = {
        "account_id": answer["account_id"],
        "name": answer["name"],
        "api_key": key,
        "balances": answer["balances"],
    }
    return json_response(answer, 201)


@admin_bp.get("/admin/accounts")
def list_accounts():
    return json_response(_exchange().admin_accounts(_auth().registry.accounts.values()))


def _transfer(withdraw: bool):
    body = read_json_body(request, MAX_ORDER_BODY)
    account = _auth().transfer(body, withdraw)
    return json_response(
        {"account_id": str(account.account_id), "balances": _exchange().account(account)["balances"]}
    )


@admin_bp.post("/admin/deposit")
def deposit():
    return _transfer(False)


@admin_bp.post("/admin/withdraw")
def withdraw():
    return _transfer(True)


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
