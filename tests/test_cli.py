"""The ``redmodel`` command against the throwaway server: run in this process as
``python -m redmodel`` would run it (redmodel_cli), and as a real process where the
process is the point (the console script, stdout's bytes in a pipe, TLS files)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import gzip
import io
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

import redmodel
from redmodel._indexes import _blind
from redmodel.cli import _app
from redmodel.codecs import _fernet
from redmodel.testing import RedisClusterServer, RedisServer
from tests import cli_models as m

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
ENCRYPTED = ["tests.cli_models:Hat", "tests.cli_models:User", "tests.cli_models:Note",
             "tests.cli_models:Session", "tests.cli_models:Every"]
ENCRYPTED_ARGS = [a for path in ENCRYPTED for a in ("-m", path)]


def redmodel_cli(*args: str, url: str | None = None, keys: str | None = KEY_A,
                 stdin: bytes | None = None, cwd: Path = ROOT, timeout: float = 120,
                 process: bool = False) -> subprocess.CompletedProcess[str]:
    """``redmodel ARGS`` with REDIS_URL and REDMODEL_FERNET_KEYS (None: unset) as its only
    REDIS_* / REDMODEL_FERNET* variables: in this process (:func:`_run_here`), or with
    ``process=True`` as ``python -m redmodel ARGS`` (a test whose point is the process)."""
    if not process:
        return _run_here(list(args), url, keys, stdin)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "REDMODEL_FERNET"))}
    env["PYTHONPATH"] = str(ROOT)
    if url is not None:
        env["REDIS_URL"] = url
    if keys is not None:
        env["REDMODEL_FERNET_KEYS"] = keys
    done = subprocess.run([sys.executable, "-m", "redmodel", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, timeout=timeout, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode("utf-8", "replace"),
                                       done.stderr.decode("utf-8", "replace"))


def _run_here(args: list[str], url: str | None, keys: str | None, stdin: bytes | None
              ) -> subprocess.CompletedProcess[str]:
    """What ``python -m redmodel ARGS`` does (redmodel.cli._app.run: its exit code), in
    this process (a subprocess costs an interpreter start and redmodel's imports, ~1 s
    per call on a loaded machine): its environment as the subprocess's, no Fernet or index
    key configured in the process (as in a new one: the command configures its own),
    stdin/stdout/stderr strict UTF-8 text streams over bytes as a process has them (the
    command reconfigures them as it does the real ones); all of it restored afterwards."""
    names = ("REDIS_", "REDMODEL_FERNET")
    saved_env = {k: v for k, v in os.environ.items() if k.startswith(names)}
    saved_keys = (_fernet._configured, _blind._configured, _blind._cache)
    out, err = io.BytesIO(), io.BytesIO()
    streams = [io.TextIOWrapper(b, encoding="utf-8", errors="strict", write_through=True)
               for b in (out, err)]
    saved_stdin = sys.stdin
    try:
        for k in saved_env:
            del os.environ[k]
        if url is not None:
            os.environ["REDIS_URL"] = url
        if keys is not None:
            os.environ["REDMODEL_FERNET_KEYS"] = keys
        _fernet._configured = None
        _blind._configured = None
        _blind._cache = None
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8")
        with contextlib.redirect_stdout(streams[0]), contextlib.redirect_stderr(streams[1]):
            code = _app.run(args)
    finally:
        sys.stdin = saved_stdin
        for k in [k for k in os.environ if k.startswith(names)]:
            del os.environ[k]
        os.environ.update(saved_env)
        _fernet._configured, _blind._configured, _blind._cache = saved_keys
    return subprocess.CompletedProcess(["redmodel", *args], code,
                                       out.getvalue().decode("utf-8", "replace"),
                                       err.getvalue().decode("utf-8", "replace"))


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process encrypts with KEY_A (the subprocesses get it through the environment)."""
    monkeypatch.setattr(_fernet, "_configured", None)
    redmodel.codecs.configure_fernet(keys=[KEY_A])
    yield


@pytest.fixture
def data(store: redmodel.Store, keys: None) -> dict[str, list[Any]]:
    """Some objects of every model, a few with a TTL."""
    hats = [m.Hat(color=("black", "green")[i % 2], price=10.0 + i, sku=f"S{i}", quantity=i)
            for i in range(30)]
    users = [m.User(f"u{i}", m.Card(4000_0000_0000_0000 + i, (2030, 1 + i % 12)),
                    m.Address("Oslo", 100 + i, secret=f"pin-{i}"), id=str(i))
             for i in range(20)]
    notes = [m.Note(f"private note {i}") for i in range(5)]
    sessions = [m.Session(f"u{i}") for i in range(5)]
    every = [m.Every(dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc),
                     dt.date(2024, 2, 29), decimal.Decimal("1.10"), uuid.UUID(int=i),
                     m.Tier.PAID, bytes(range(i, i + 8)), 0.1 * i, {"a", "b", f"c{i}"},
                     {1: "one", 2: "two"}, (i, "x"), maybe=i if i % 2 else None)
             for i in range(5)]
    store.save_many([*hats, *users, *notes, *every])
    store.save_many(sessions)  # the model's ttl: 3600 s
    store.expire(m.Hat, hats[0].id, 500)
    store.expire(m.User, "3", 700)
    return {"Hat": hats, "User": users, "Note": notes, "Session": sessions, "Every": every}


def all_objects(store: redmodel.Store, data: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {name: sorted(store.scan(getattr(m, name)), key=lambda o: str(o.id))
            for name in data}


def expected(data: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {name: sorted(objs, key=lambda o: str(o.id)) for name, objs in data.items()}


def model_args(*names: str) -> list[str]:
    return [a for name in names for a in ("--models", f"tests.cli_models:{name}")]


# ---- the command itself ------------------------------------------------------------------


def test_console_script_lists_every_command() -> None:
    done = subprocess.run([str(BIN / "redmodel"), "--help"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    for name in ("inspect", "verify", "reindex", "rotate-keys", "export", "import"):
        assert name in done.stdout


def test_no_models_is_a_usage_error(redis_url: str) -> None:
    done = redmodel_cli("verify", url=redis_url)
    assert done.returncode == 2
    assert "--models" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("path", ["no_such_module_x", "tests.cli_models:Nope",
                                  "tests.cli_models:Card", "json"])
def test_bad_models_path_is_a_usage_error_in_one_line(redis_url: str, path: str) -> None:
    done = redmodel_cli("inspect", "--models", path, url=redis_url)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert path in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:notaport/0",
                                 "redis://u:hunter2@[::1/0"])
def test_malformed_url_is_a_usage_error_with_the_password_masked(url: str) -> None:
    """docs/cli.md: a URL that does not parse is a bad option (exit 2), in one line that
    names it without its password; --json says so on stdout too."""
    done = redmodel_cli("inspect", "--models", "tests.cli_models:Session", "--json", url=url)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "cannot use the URL" in line and "hunter2" not in line + done.stdout, line
    assert as_json(done)["exit_code"] == 2


@pytest.mark.parametrize("command", ["inspect", "export", "import"])
def test_unreachable_server_is_one_line_and_exit_3(command: str, tmp_path: Path) -> None:
    url = f"redis://:hunter2@127.0.0.1:{_free_port()}/0"
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"v": 1, "model": "tests.cli_models:Session", "id": "a",
                                  "pttl": None, "data": {"user": "x"}}) + "\n")
    extra = ["-i", str(source)] if command == "import" else []
    done = redmodel_cli(command, "--models", "tests.cli_models:Session", "--json", *extra,
                        url=url)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "cannot reach" in line and "hunter2" not in line
    assert as_json(done)["exit_code"] == 3


# A server that wants a password, given none: one line naming the fix, not redis-py 8's
# "HELLO must be called with the client already authenticated, otherwise ..." riddle.
def test_a_password_the_server_wants_is_asked_for_in_one_line() -> None:
    with RedisServer(password="s3cret") as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        done = redmodel_cli("inspect", "--models", "tests.cli_models:Session", "--json",
                            url=url)
        wrong = redmodel_cli("inspect", "--models", "tests.cli_models:Session",
                             url=f"redis://:wrong@127.0.0.1:{server.port}/0")
    assert done.returncode == 3, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "needs a password: give it in REDIS_PASSWORD" in line, line
    assert "HELLO" not in line and as_json(done)["exit_code"] == 3
    assert wrong.returncode == 3
    (line,) = wrong.stderr.strip().splitlines()
    assert "refused the login: invalid username-password pair" in line, line


def test_files_that_cannot_be_opened_are_usage_errors(redis_url: str, tmp_path: Path
                                                      ) -> None:
    done = redmodel_cli("import", *model_args("Session"), "-i", str(tmp_path / "missing"),
                        url=redis_url)
    assert done.returncode == 2 and "missing" in done.stderr
    done = redmodel_cli("export", *model_args("Session"), "-o",
                        str(tmp_path / "no" / "dir.jsonl"), url=redis_url)
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_tls_with_the_ca_file_from_the_environment(tls_redis_server: RedisServer) -> None:
    """--url names the server; the REDIS_* variables of Store.from_env still apply."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_CA_FILE": tls_redis_server.ca_file}
    if tls_redis_server.password:
        env["REDIS_PASSWORD"] = tls_redis_server.password
    done = subprocess.run([sys.executable, "-m", "redmodel", "verify", *model_args("Session"),
                           "--url", tls_redis_server.url], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    env.pop("REDIS_CA_FILE")
    done = subprocess.run([sys.executable, "-m", "redmodel", "verify", *model_args("Session"),
                           "--url", tls_redis_server.url], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3 and "Traceback" not in done.stderr


# ---- inspect ------------------------------------------------------------------------------


def test_inspect_reports_count_memory_ttl_and_schema(
        redis_url: str, store: redmodel.Store, data: dict[str, list[Any]]) -> None:
    done = redmodel_cli("inspect", *model_args("Hat", "User", "Session", "BlobFieldCodec"),
                        "--json", "--sample", "1000", url=redis_url)
    assert done.returncode == 0, done.stderr
    reports = {r["name"]: r for r in as_json(done)["models"]}
    hat = reports["Hat"]
    assert hat["count"] == 30 and hat["prefix"] == "chat" and hat["layout"] == "hash"
    assert {i["field"]: i["kinds"] for i in hat["indexes"]} == {
        "color": ["eq"], "price": ["range"], "sku": ["eq"]}
    assert hat["unique"] == [["sku"]]
    assert hat["memory"]["estimate"] is True and hat["memory"]["bytes_per_object"] > 0
    assert hat["memory"]["total_bytes"] == pytest.approx(30 * hat["memory"]["bytes_per_object"],
                                                         abs=30)
    assert hat["ttl_spread"]["none"] == 29 and 0 < hat["ttl_spread"]["max"] <= 500
    assert hat["schema"] == {"sampled": 30, "ok": 30, "failed": 0, "errors": [],
                             "unknown_stored_fields": {}, "renamed_stored_fields": {}}
    user = reports["User"]
    assert [f["name"] for f in user["fields"] if f["encrypted"]] == ["card", "address.secret"]
    assert reports["Session"]["ttl"] == 3600
    assert reports["Session"]["ttl_spread"]["none"] == 0
    assert hat["warnings"] == [] and user["warnings"] == []
    (warning,) = reports["BlobFieldCodec"]["warnings"]
    assert "secret" in warning and "json|zlib" in warning
    assert reports["BlobFieldCodec"]["encrypted"] is False


def test_inspect_names_what_does_not_decode_without_revealing_secrets(
        redis_url: str, store: redmodel.Store, data: dict[str, list[Any]]) -> None:
    client = store.client
    hat_key = f"chat:{data['Hat'][3].id}"
    client.hset(hat_key, "price", "cheap")
    client.hset(hat_key, "colour", "red")  # a field the model does not declare
    token = client.hget("cuser:4", "card")
    client.hset("cuser:4", "card", token[:-5] + b"xxxxx")  # tampered ciphertext
    done = redmodel_cli("inspect", *model_args("Hat", "User"), "--json", "--sample", "1000",
                        url=redis_url)
    assert done.returncode == 1, done.stderr
    reports = {r["name"]: r for r in as_json(done)["models"]}
    (error,) = reports["Hat"]["schema"]["errors"]
    assert error["field"] == "price" and error["count"] == 1 and error["first_key"] == hat_key
    assert reports["Hat"]["schema"]["unknown_stored_fields"] == {"colour": 1}
    (error,) = reports["User"]["schema"]["errors"]
    assert error["field"] == "card" and error["codec"] == "json|fernet"
    assert "4000000000000004" not in done.stdout + done.stderr
    text = redmodel_cli("inspect", *model_args("Hat", "User"), url=redis_url)
    assert text.returncode == 1
    assert "1 of 30 sampled objects do not decode" in text.stdout
    assert "'colour' (1)" in text.stdout


def test_inspect_without_keys_reports_the_missing_keys_as_the_kind(
        redis_url: str, store: redmodel.Store, data: dict[str, list[Any]]) -> None:
    done = redmodel_cli("inspect", *model_args("User"), "--json", keys=None, url=redis_url)
    assert done.returncode == 1
    (error,) = as_json(done)["models"][0]["schema"]["errors"]
    assert error["error"] == "CodecError" and error["count"] == 20
    assert "REDMODEL_FERNET_KEYS" in error["first_error"]


# ---- verify, reindex, rotate-keys ------------------------------------------------------


def test_verify_exits_1_on_problems_and_reindex_repairs_them(
        redis_url: str, store: redmodel.Store, data: dict[str, list[Any]]) -> None:
    args = model_args("Hat", "User")
    assert redmodel_cli("verify", *args, url=redis_url).returncode == 0
    # the index is lost (or was added after the data): every entry is missing
    store.client.delete(*store.client.keys("chat:%idx:*"))
    done = redmodel_cli("verify", *args, "--json", url=redis_url)
    assert done.returncode == 1
    report = {r["model"]: r for r in as_json(done)["models"]}
    # verify reports an object with no entry at all once ("not indexed at all")
    assert report["tests.cli_models:Hat"]["problems"] == 30
    assert report["tests.cli_models:User"]["problems"] == 0
    text = redmodel_cli("verify", *args, url=redis_url)
    assert "30 problems" in text.stdout and "redmodel reindex" in text.stdout
    repaired = redmodel_cli("repair", *args, "--json", url=redis_url)
    assert repaired.returncode == 0, repaired.stderr
    assert {r["model"]: r.get("reindexed") for r in as_json(repaired)["models"]} == {
        "tests.cli_models:Hat": 30, "tests.cli_models:User": 20}
    assert redmodel_cli("verify", *args, url=redis_url).returncode == 0
    assert len(store.find(m.Hat, color="black").all()) == 15


def test_rotate_keys_moves_every_value_to_the_newest_key(
        redis_url: str, store: redmodel.Store, data: dict[str, list[Any]]) -> None:
    done = redmodel_cli("rotate-keys", *model_args("Hat", "User", "Note"), "--json",
                        keys=f"{KEY_B},{KEY_A}", url=redis_url)
    assert done.returncode == 0, done.stderr
    rewritten = {r["model"]: r.get("rewritten", r.get("skipped"))
                 for r in as_json(done)["models"]}
    assert rewritten == {"tests.cli_models:Hat": "nothing encrypted",
                         "tests.cli_models:User": 40, "tests.cli_models:Note": 5}
    redmodel.codecs.configure_fernet(keys=[KEY_B])  # the old key is gone: everything still reads
    assert all_objects(store, {"User": [], "Note": []}) == expected(
        {"User": data["User"], "Note": data["Note"]})


def test_rotate_keys_without_keys_is_a_usage_error(
        redis_url: str, store: redmodel.Store, data: dict[str, list[Any]]) -> None:
    done = redmodel_cli("rotate-keys", *model_args("User"), keys=None, url=redis_url)
    assert done.returncode == 2
    assert "REDMODEL_FERNET_KEYS" in done.stderr and "Traceback" not in done.stderr


# ---- export and import -------------------------------------------------------------------


def _export(redis_url: str, path: Path, *extra: str, keys: str | None = KEY_A) -> Any:
    done = redmodel_cli("export", *ENCRYPTED_ARGS, "-o", str(path),
                        "--json", *extra, url=redis_url, keys=keys)
    assert done.returncode == 0, done.stderr
    return as_json(done)


def _import(redis_url: str, path: Path, *extra: str, keys: str | None = KEY_A) -> Any:
    done = redmodel_cli("import", *ENCRYPTED_ARGS, "-i", str(path),
                        "--json", *extra, url=redis_url, keys=keys)
    assert done.returncode == 0, done.stderr
    return as_json(done)


def _check_ttls(store: redmodel.Store, data: dict[str, list[Any]]) -> None:
    assert 400 < (store.ttl(m.Hat, data["Hat"][0].id) or 0) <= 500
    assert store.ttl(m.Hat, data["Hat"][1].id) is None
    assert 600 < (store.ttl(m.User, "3") or 0) <= 700
    assert store.ttl(m.User, "4") is None
    assert 3500 < (store.ttl(m.Session, data["Session"][0].id) or 0) <= 3600


def test_export_keeps_ciphertext_and_import_without_keys_restores_it(
        redis_url: str, store: redmodel.Store, data: dict[str, list[Any]], tmp_path: Path
) -> None:
    note_key = f"cnote:{data['Note'][0].id}"
    before = (store.client.hgetall("cuser:5"), store.client.get(note_key))
    path = tmp_path / "dump.jsonl"
    summary = _export(redis_url, path, keys=None)  # no keys needed to export ciphertext
    assert summary["exported"] == 65
    text = path.read_text()
    assert "4000000000000005" not in text and "pin-5" not in text
    assert "private note" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    user5 = next(x for x in lines if x["model"] == "tests.cli_models:User" and x["id"] == "5")
    assert set(user5["enc"]) == {"card", "address.secret"}
    assert user5["data"] == {"name": "u5", "address": {"city": "Oslo", "zip": 105},
                             "note": None}
    assert base64.b64decode(user5["enc"]["card"]) == store.client.hget("cuser:5", "card")
    store.client.flushall()
    report = _import(redis_url, path, "--dry-run", keys=None)
    assert report["lines"] == 65 and report["imported"] == 0
    assert store.client.dbsize() == 0
    summary = _import(redis_url, path, keys=None)  # nor to import it
    assert summary["imported"] == 65
    assert all_objects(store, data) == expected(data)
    assert store.client.hget("cuser:5", "card") == base64.b64decode(user5["enc"]["card"])
    assert (store.client.hgetall("cuser:5"), store.client.get(note_key)) == before
    _check_ttls(store, data)
    assert redmodel_cli("verify", "-m", "tests.cli_models", url=redis_url).returncode == 0
    assert [u.id for u in store.find(m.User, name="u7")] == ["7"]


def test_export_decrypted_and_import_re_encrypts_under_the_newest_key(
        redis_url: str, store: redmodel.Store, data: dict[str, list[Any]], tmp_path: Path
) -> None:
    path = tmp_path / "dump.jsonl.gz"
    _export(redis_url, path, "--decrypt")
    with gzip.open(path, "rt") as f:
        text = f.read()
    assert "4000000000000005" in text and "pin-5" in text and '"enc"' not in text
    store.client.flushall()
    _import(redis_url, path, keys=f"{KEY_B},{KEY_A}")
    redmodel.codecs.configure_fernet(keys=[KEY_B])  # readable with the newest key alone
    assert all_objects(store, data) == expected(data)
    _check_ttls(store, data)


def test_import_decrypt_re_encrypts_a_ciphertext_export(
        redis_url: str, store: redmodel.Store, data: dict[str, list[Any]], tmp_path: Path
) -> None:
    path = tmp_path / "dump.jsonl"
    _export(redis_url, path)
    store.client.flushall()
    _import(redis_url, path, "--decrypt", keys=f"{KEY_B},{KEY_A}")
    redmodel.codecs.configure_fernet(keys=[KEY_B])
    assert all_objects(store, data) == expected(data)


def test_import_from_stdin_and_a_flat_model(
        redis_url: str, store: redmodel.Store, keys: None, tmp_path: Path) -> None:
    docs = [m.Doc(f"doc {i}", m.Place("Bergen", i), tags=["a", f"t{i}"], id=i)
            for i in range(1, 50)]
    store.save_many(docs)
    done = redmodel_cli("export", *model_args("Doc"), "--progress", url=redis_url)
    assert done.returncode == 0, done.stderr
    assert "export Doc 49" in done.stderr  # the progress display, forced on
    assert "exported 49 objects" in done.stderr
    store.client.flushall()
    back = redmodel_cli("import", *model_args("Doc"), "--progress", url=redis_url,
                        stdin=done.stdout.encode())
    assert back.returncode == 0, back.stderr
    assert "check" in back.stderr and "imported 49 objects" in back.stdout
    assert sorted(store.scan(m.Doc), key=lambda d: d.id) == docs


def test_flat_layout_ciphertext_export_is_refused_before_writing(
        redis_url: str, store: redmodel.Store, keys: None, tmp_path: Path) -> None:
    store.save(m.FlatSecret("s"))
    out = tmp_path / "x.jsonl"
    done = redmodel_cli("export", *model_args("FlatSecret"), "-o", str(out), url=redis_url)
    assert done.returncode == 2 and "--decrypt" in done.stderr
    assert not out.exists()
    done = redmodel_cli("export", *model_args("FlatSecret"), "-o", str(out), "--decrypt",
                        url=redis_url)
    assert done.returncode == 0, done.stderr


def test_import_checks_every_line_first_and_names_the_bad_ones(
        redis_url: str, store: redmodel.Store, keys: None, tmp_path: Path) -> None:
    good = {"v": 1, "model": "tests.cli_models:Hat", "id": "h1", "pttl": None,
            "data": {"color": "red", "price": 1.5, "sku": "A", "quantity": 2}}

    def hat(**changes: Any) -> str:
        line = json.loads(json.dumps(good))
        for k, v in changes.items():
            if k in line:
                line[k] = v
            else:
                line["data"][k] = v
        return json.dumps(line)

    token = base64.b64encode(b"\xa7\x0bjson|fernet" + b"x" * 40).decode()
    lines = [
        hat(),                                               # 1 good
        "{not json",                                         # 2
        hat(v=2),                                            # 3 unknown format version
        hat(model="tests.cli_models:Nope"),                  # 4 unknown model
        hat(quantity=41.9),                                  # 5 would be coerced to 41
        hat(price="cheap"),                                  # 6 not a float
        json.dumps({**good, "data": {"color": "red"}}),      # 7 fields missing
        hat(pttl=-5),                                        # 8
        hat(id=""),                                          # 9
        "",                                                  # 10 blank: skipped
        json.dumps({"v": 1, "model": "tests.cli_models:User", "id": "u", "pttl": None,
                    "data": {"name": "n", "address": {"city": "c", "zip": 1}},
                    "enc": {"card": "***", "address.secret": token}}),  # 11 bad base64
        hat(id="h2", quantity=True),                         # 12 a bool is not an int
        hat(id="h3", sku="B"),                               # 13 good (its own sku)
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = redmodel_cli("import", "-m", "tests.cli_models", "-i", str(path), "--json",
                        url=redis_url)
    assert done.returncode == 1, done.stderr
    report = as_json(done)
    assert report["lines"] == 12 and report["bad_lines"] == 10 and report["imported"] == 0
    errors = {e["line"]: e["error"] for e in report["errors"]}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
    assert "not JSON" in errors[2] and "version 2" in errors[3]
    assert "quantity" in errors[5] and "price" in errors[6]
    assert "card" in errors[11]
    assert store.client.dbsize() == 0  # nothing written
    text = redmodel_cli("import", "-m", "tests.cli_models", "-i", str(path), url=redis_url)
    assert re.search(r"^line 5: .*quantity", text.stdout, re.M)
    assert "nothing was imported" in text.stdout


def test_export_streams_lines_before_the_scan_ends(
        redis_url: str, store: redmodel.Store) -> None:
    """Lines reach the output while SCAN still runs: after the first line arrives the
    keyspace is emptied, and the export ends far short of every object. An export that
    read everything before writing would still write them all."""
    n = 20_000
    store.save_many([m.Session(f"user-{i}") for i in range(n)], ttl=None)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url}
    proc = subprocess.Popen([sys.executable, "-m", "redmodel", "export", "-m",
                             "tests.cli_models:Session", "--count", "100"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert json.loads(first)["model"] == "tests.cli_models:Session"
    store.client.flushall()
    rest = proc.stdout.read().splitlines()
    assert proc.wait(timeout=60) == 0
    assert len(rest) + 1 < n / 2


def test_export_into_a_closed_pipe_stops_quietly(redis_url: str, store: redmodel.Store
                                                 ) -> None:
    """``redmodel export | head -1``: no traceback when the reader goes away."""
    store.save_many([m.Session(f"user-{i}") for i in range(5000)], ttl=None)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url}
    proc = subprocess.Popen([sys.executable, "-m", "redmodel", "export", "-m",
                             "tests.cli_models:Session"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 141
    assert proc.stderr.read() == b""


def test_import_matches_a_model_that_moved_module_by_class_name(
        redis_url: str, store: redmodel.Store, keys: None, tmp_path: Path) -> None:
    line = {"v": 1, "model": "old.place:Session", "id": "s1", "pttl": None,
            "data": {"user": "ann", "gone": 1}}
    path = tmp_path / "moved.jsonl"
    path.write_text(json.dumps(line) + "\n")
    done = redmodel_cli("import", *model_args("Session"), "-i", str(path), "--json",
                        url=redis_url)
    assert done.returncode == 0, done.stderr
    assert as_json(done)["ignored_fields"] == {"Session.gone": 1}
    assert store.get(m.Session, "s1") == m.Session("ann", id="s1")
    assert store.ttl(m.Session, "s1") is None  # exported without expiry: kept without


# ---- a cluster ------------------------------------------------------------------------------


def test_cluster_inspect_export_import_verify(
        redis_cluster: RedisClusterServer, redis_cluster_client: Any, keys: None,
        tmp_path: Path) -> None:
    store = redmodel.Store(redis_cluster_client)
    users = [m.BucketUser(f"u{i % 5}", m.Card(i, (2030, 1)), id=str(i)) for i in range(40)]
    sessions = [m.Session(f"s{i}") for i in range(20)]
    store.save_many(users)
    store.save_many(sessions)
    host, port = redis_cluster.addresses[0]
    url = f"redis://{host}:{port}/0"
    args = [*model_args("BucketUser", "Session"), "--cluster", "--json"]
    report = as_json(redmodel_cli("inspect", *args, url=url))
    assert [(r["name"], r["count"], r["schema"]["failed"]) for r in report["models"]] == [
        ("BucketUser", 40, 0), ("Session", 20, 0)]
    path = tmp_path / "cluster.jsonl"
    done = redmodel_cli("export", *args, "-o", str(path), keys=None, url=url)
    assert done.returncode == 0, done.stderr
    redis_cluster_client.flushall(target_nodes=redis_cluster_client.PRIMARIES)
    done = redmodel_cli("import", *args, "-i", str(path), keys=None, url=url)
    assert done.returncode == 0, done.stderr
    assert sorted(store.scan(m.BucketUser), key=lambda u: int(u.id)) == users
    assert sorted(store.scan(m.Session), key=lambda s: s.id) == sorted(sessions,
                                                                       key=lambda s: s.id)
    assert len(store.find(m.BucketUser, name="u1").all()) == 8
    assert redmodel_cli("verify", *args, url=url).returncode == 0


# test_the_throughput_benchmark_runs and test_docs_cli_examples_run: tests/test_cli_docs.py
# (their own file, so xdist runs them beside this one: --dist loadfile keeps a file in one
# worker).


def test_inspect_and_export_read_fields_stored_under_old_names(
        redis_url: str, store: redmodel.Store, keys: None) -> None:
    """An export taken mid-migration (some objects still under a field's old name, or of
    its older type) is complete, and inspect reports those names as renamed, not unknown."""
    client = store.client
    store.save(m.Moved(4, m.Box(2), "s", id="new"))
    client.hset("cmoved:old", mapping={"qty": "41.9", "crate:width": "7", "legacy": "x"})
    store.save(m.MovedPlain(5, id="new"))
    client.hset("cmovedp:old", mapping={"qty": "2.5"})
    done = redmodel_cli("inspect", *model_args("Moved"), "--json", url=redis_url)
    assert done.returncode == 0, done.stderr
    (report,) = as_json(done)["models"]
    assert report["schema"]["unknown_stored_fields"] == {"legacy": 1}
    assert report["schema"]["renamed_stored_fields"] == {
        "qty": {"field": "quantity", "count": 1},
        "crate:width": {"field": "box:width", "count": 1}}
    text = redmodel_cli("inspect", *model_args("Moved"), url=redis_url).stdout
    assert "'qty' -> 'quantity' (1)" in text and "renamed, pending rewrite" in text
    for name in ("Moved", "MovedPlain"):
        done = redmodel_cli("export", *model_args(name), url=redis_url, keys=None)
        assert done.returncode == 0, done.stderr
        lines = {line["id"]: line["data"] for line in map(json.loads, done.stdout.splitlines())}
        assert lines["old"]["quantity"] == (42 if name == "Moved" else 2)
        assert lines["new"]["quantity"] == (4 if name == "Moved" else 5)
        if name == "Moved":
            assert lines["old"]["box"] == {"width": 7} and lines["new"]["box"] == {"width": 2}
