"""``python -m api.admin`` against a real server with ``--auth on`` (issue 12).

The command line is run as a user runs it (a subprocess in the repository); the
server is one ``api/app.py --auth on`` per module, on a free port and a temporary
data dir whose ``admin.token`` the CLI reads.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest
import requests

from tests.serverproc import ROOT, ServerProcess, free_port

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("admin-cli") / "data"
    with ServerProcess(data, "--auth", "on") as srv:
        yield srv


def admin(server, *args: str, stdin: str | None = None, data_dir: str | None = None):
    """Run the CLI; returns the CompletedProcess (never raises on a non-zero exit)."""
    cmd = [sys.executable, "-m", "api.admin", "--url", server.url, "--data-dir", data_dir or server.data_dir]
    return subprocess.run([*cmd, *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=30)


def key_from(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("API key: ")]
    assert len(lines) == 1, out
    return lines[0].removeprefix("API key: ").strip()


def account_of(server, key: str) -> requests.Response:
    return requests.get(server.url + "/account", headers={"X-API-Key": key}, timeout=5)


def token_of(server) -> str:
    with open(os.path.join(server.data_dir, "admin.token")) as f:
        return f.read().strip()


def test_create_account_prints_a_working_key_once(server):
    run = admin(server, "create-account", "alice")
    assert run.returncode == 0, run.stderr
    key = key_from(run.stdout)
    assert run.stdout.count(key) == 1
    assert "shown once" in run.stdout
    answer = account_of(server, key)
    assert answer.status_code == 200 and answer.json()["name"] == "alice"
    assert token_of(server) not in run.stdout + run.stderr


def test_list_accounts_shows_every_account_and_json_is_parseable(server):
    assert admin(server, "create-account", "lister").returncode == 0
    run = admin(server, "list-accounts")
    assert run.returncode == 0, run.stderr
    assert "lister" in run.stdout and "account(s)" in run.stdout
    as_json = admin(server, "list-accounts", "--json")
    names = [a["name"] for a in json.loads(as_json.stdout)["accounts"]]
    assert "lister" in names


def test_new_key_gives_a_second_working_key(server):
    created = admin(server, "create-account", "--json", "bob")
    assert created.returncode == 0, created.stderr
    first = json.loads(created.stdout)
    run = admin(server, "new-key", first["account_id"])
    assert run.returncode == 0, run.stderr
    second = key_from(run.stdout)
    assert second != first["api_key"]
    for key in (first["api_key"], second):
        assert account_of(server, key).json()["account_id"] == first["account_id"]


def test_revoke_key_reads_stdin_and_the_key_stops_working(server):
    created = json.loads(admin(server, "--json", "create-account", "carol").stdout)
    other = key_from(admin(server, "new-key", created["account_id"]).stdout)
    run = admin(server, "revoke-key", stdin=created["api_key"] + "\n")
    assert run.returncode == 0, run.stderr
    assert "revoked" in run.stdout
    assert account_of(server, created["api_key"]).status_code == 401
    assert account_of(server, other).status_code == 200  # the account's other key stays


def test_revoke_key_from_a_file(server, tmp_path):
    created = json.loads(admin(server, "--json", "create-account", "dave").stdout)
    path = tmp_path / "key.txt"
    path.write_text(created["api_key"] + "\n")
    run = admin(server, "revoke-key", "--key-file", str(path))
    assert run.returncode == 0, run.stderr
    assert account_of(server, created["api_key"]).status_code == 401


def test_revoke_a_lost_key_by_the_id_list_accounts_shows(server):
    created = json.loads(admin(server, "--json", "create-account", "gina").stdout)
    listing = admin(server, "list-accounts")
    row = next(line for line in listing.stdout.splitlines() if " gina " in f" {line} ")
    key_id = row.split()[2]
    assert key_id != "-" and created["api_key"] not in listing.stdout
    run = admin(server, "revoke-key", "--key-id", key_id)
    assert run.returncode == 0, run.stderr
    assert account_of(server, created["api_key"]).status_code == 401
    after = admin(server, "list-accounts").stdout
    assert next(line for line in after.splitlines() if " gina " in f" {line} ").split()[2] == "-"


def test_revoke_key_never_takes_the_key_on_the_command_line(server):
    created = json.loads(admin(server, "--json", "create-account", "erin").stdout)
    run = admin(server, "revoke-key", created["api_key"])
    assert run.returncode == 2 and "unrecognized arguments" in run.stderr
    assert account_of(server, created["api_key"]).status_code == 200


def test_key_out_writes_a_private_file_and_prints_no_key(server, tmp_path):
    path = tmp_path / "frank.key"
    run = admin(server, "create-account", "frank", "--key-out", str(path))
    assert run.returncode == 0, run.stderr
    assert os.stat(path).st_mode & 0o777 == 0o600
    key = path.read_text().strip()
    assert key not in run.stdout and "API key:" not in run.stdout
    assert account_of(server, key).json()["name"] == "frank"
    again = admin(server, "create-account", "frank2", "--key-out", str(path))
    assert again.returncode == 2 and "exists" in again.stderr  # refused before any key is made
    names = [a["name"] for a in json.loads(admin(server, "--json", "list-accounts").stdout)["accounts"]]
    assert "frank2" not in names


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("create-account", "alice"), "ACCOUNT_EXISTS"),  # made by the first test, or now
        (("create-account", "no spaces allowed"), "VALIDATION_ERROR"),
        (("create-account", "x" * 65), "VALIDATION_ERROR"),
        (("new-key", "no-such-account"), "ACCOUNT_NOT_FOUND"),
    ],
)
def test_refusals_print_the_servers_code_and_exit_1(server, args, code):
    admin(server, "create-account", "alice")
    run = admin(server, *args)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"error ({code})" in run.stderr
    assert "Traceback" not in run.stderr


def test_revoking_an_unknown_key_is_refused(server):
    run = admin(server, "revoke-key", stdin="not-a-key-of-this-server\n")
    assert run.returncode == 1 and "error (" in run.stderr


def test_a_wrong_token_is_refused_without_echoing_it(server, tmp_path):
    (tmp_path / "admin.token").write_text("wrong-token-0123456789abcdef\n")
    run = admin(server, "list-accounts", data_dir=str(tmp_path))
    assert run.returncode == 1
    assert "UNAUTHENTICATED" in run.stderr and "admin token" in run.stderr
    assert "wrong-token" not in run.stdout + run.stderr


def test_a_missing_token_says_where_it_looked(server, tmp_path):
    run = admin(server, "list-accounts", data_dir=str(tmp_path / "nothing"))
    assert run.returncode == 2
    assert "no admin token at" in run.stderr and "admin.token" in run.stderr


def test_admin_token_file_option(server, tmp_path):
    path = tmp_path / "token"
    path.write_text(token_of(server) + "\n")
    run = admin(server, "--admin-token-file", str(path), "list-accounts", data_dir=str(tmp_path / "nothing"))
    assert run.returncode == 0, run.stderr


def test_an_unreachable_server_exits_2(server):
    url = f"http://127.0.0.1:{free_port()}"
    run = subprocess.run(
        [sys.executable, "-m", "api.admin", "--url", url, "--data-dir", server.data_dir, "list-accounts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2 and "unreachable" in run.stderr


def test_the_token_is_not_sent_in_clear_to_another_host(server):
    run = subprocess.run(
        [
            *(sys.executable, "-m", "api.admin", "--url", "http://192.0.2.1:5000"),
            *("--data-dir", server.data_dir, "list-accounts"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2 and "refusing to send the admin token" in run.stderr


def test_create_account_with_deposits_then_deposit_and_withdraw(server):
    run = admin(
        server, "create-account", "--json", "funded", "--deposit", "USDT=1000", "--deposit", "BTC=0.5"
    )
    assert run.returncode == 0, run.stderr
    created = json.loads(run.stdout)
    usdt = next(b for b in created["balances"] if b["asset"] == "USDT")
    assert usdt == {"asset": "USDT", "available": "1000.0000000000", "locked": "0.0000000000"}
    account_id = created["account_id"]
    run = admin(server, "deposit", account_id, "USDT", "24.5")
    assert run.returncode == 0, run.stderr
    assert "deposited 24.5 USDT" in run.stdout and "USDT 1024.5000000000+0.0000000000" in run.stdout
    run = admin(server, "withdraw", account_id, "BTC", "0.125")
    assert run.returncode == 0, run.stderr
    assert "BTC 0.37500+0.00000" in run.stdout
    me = account_of(server, created["api_key"]).json()
    assert next(b for b in me["balances"] if b["asset"] == "BTC")["available"] == "0.37500"
    listed = admin(server, "list-accounts")
    line = next(x for x in listed.stdout.splitlines() if " funded " in x)
    assert "USDT 1024.5000000000+0.0000000000" in line and "ETH" not in line  # zero balances left out
    assert "fees:" in listed.stdout


_POOR = itertools.count(1)


@pytest.mark.parametrize(
    "args,code",
    [
        (("withdraw", "{id}", "USDT", "1000000"), "INSUFFICIENT_FUNDS"),
        (("deposit", "{id}", "XRP", "1"), "VALIDATION_ERROR"),
        (("deposit", "{id}", "USDT", "-1"), "VALIDATION_ERROR"),
        (("deposit", "{id}", "BTC", "0.000001"), "VALIDATION_ERROR"),
        (("deposit", "999", "USDT", "1"), "ACCOUNT_NOT_FOUND"),
    ],
)
def test_refused_transfers_exit_1_with_the_servers_code(server, args, code):
    created = json.loads(admin(server, "create-account", "--json", f"poor-{next(_POOR)}").stdout)
    run = admin(server, *(a.format(id=created["account_id"]) for a in args))
    assert run.returncode == 1 and f"error ({code})" in run.stderr, (run.stdout, run.stderr)


def test_a_bad_deposit_option_is_a_usage_error(server):
    run = admin(server, "create-account", "nobody", "--deposit", "USDT")
    assert run.returncode == 2 and "ASSET=AMOUNT" in run.stderr
