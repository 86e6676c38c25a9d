"""``tests/serverproc.ServerProcess`` keeps every existing test on the keyless
contract: ``--auth off`` unless a test names ``--auth``, and nothing for an
older tree's server that has no such option (before/after benchmarks)."""

from tests.serverproc import ROOT, ServerProcess


def test_auth_off_by_default_and_the_tests_own_choice_wins(tmp_path):
    assert ServerProcess(tmp_path)._auth_args() == ["--auth", "off"]
    assert ServerProcess(tmp_path, "--auth", "on")._auth_args() == []
    assert ServerProcess(tmp_path, "--auth=on")._auth_args() == []


def test_an_older_server_without_the_option_gets_none(tmp_path):
    old = tmp_path / "app.py"
    old.write_text('p.add_argument("--rate-limit")\n')
    assert ServerProcess(tmp_path, script=str(old))._auth_args() == []
    assert ServerProcess(tmp_path, script=str(tmp_path / "missing.py"))._auth_args() == []
    this = ServerProcess(tmp_path, script=f"{ROOT}/api/app.py")
    assert this._auth_args() == ["--auth", "off"]
