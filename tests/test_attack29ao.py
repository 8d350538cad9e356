"""Attack 29AO: the newest changes (save_many's chunk made ahead, exactly-once mode over
RESP2 and clusters, ACL checks asked once per command)."""

from __future__ import annotations

import secrets
from typing import Any

import attrs
import pytest
import redis

import redmodel
from redmodel.testing import RedisServer
from tests.test_fix29am_once import _run


@redmodel.model(prefix="ak")
@attrs.define
class AkHat:
    color: str = redmodel.field(index=True)
    size: int = redmodel.field(index="range")
    id: str = redmodel.key_field(generated=False)


# (a user that may read the whole prefix and write the keys the model has, and any new
# object or entry key; not a new all-ids page)


def _snapshot(client: Any, pattern: str) -> dict[bytes, Any]:
    out = {}
    for k in sorted(client.keys(pattern)):
        t = client.type(k)
        out[k] = (t, client.dump(k), client.pttl(k))
    return out


def test_f1_an_all_ids_page_key_outside_the_pattern_half_writes(
        redis_server: RedisServer, redis_client: Any) -> None:
    """docs/deploy.md, "ACL users": "give an app the union of the rules of the features it
    uses, with its own key patterns" and "every redmodel script that writes more than once
    asks the ACL (`redis.acl_check_cmd`...) about each command and key its writes may call
    **before its first write**: a refusal writes nothing" (and "A model outside the key
    pattern raises redis-py's NoPermissionError before anything is written"). The scripts
    ask each command once, with its first key, assuming every key is declared at the
    EVALSHA; an all-ids page made by a split is not declared, so a user whose patterns
    cover every key the model has but not the new page gets a save half written."""
    admin = redis_client
    owner = redmodel.Store.from_url(redis_server.url)
    owner.save_many([AkHat("red", i, id=f"{i:03d}") for i in range(64)])
    keys = sorted(k.decode() for k in admin.keys("ak*"))
    name, password = f"ak-{secrets.token_hex(4)}", secrets.token_hex(16)
    patterns = ["%R~ak:*", "~ak:0*", "~ak:1*", "~ak:%schema*", "~ak:%idx:eq:*",
                "~ak:%idx:rng*", "~ak:%idx:idn*",
                "~ak:%idx:rec*", "~ak:%idx:exp*", "~ak:%idx:all*"] + [f"~{k}" for k in keys]
    admin.execute_command(
        "ACL", "SETUSER", name, "on", f">{password}", *patterns, "resetchannels", "-@all",
        "+@hash", "+@keyspace", "+@scripting", "+@set", "+@sortedset", "+@string",
        "+time", "+client|kill", "+client|id")
    before = _snapshot(admin, "ak*")
    err = None
    with redmodel.Store.from_url(redis_server.url, username=name, password=password) as st:
        try:
            st.save(AkHat("blue", 7, id="100"))
        except (redmodel.RedmodelError, redis.RedisError) as e:
            err = e
    after = _snapshot(admin, "ak*")
    assert err is not None
    assert after == before, (str(err), sorted(set(after) ^ set(before)),
                             admin.hgetall("ak:100"))
    assert owner.verify(AkHat) == []


@pytest.mark.parametrize("command", [("GEOHASH", "g", "p", "nope")])
def test_f2_exactly_once_loses_the_nulls_of_a_resp3_array(
        redis_server: RedisServer, command: tuple[str, ...]) -> None:
    """docs/failures.md, "Exactly-once mode": "A wrapped command answers in the client's
    protocol (RESP3 maps, doubles and nested pairs for a RESP3 client), as it does alone."
    The fix for 29AM F3/F4 answers RESP2 for `HMGET`, `MGET` and `SORT` only, "whose arrays
    may hold nulls, which Lua loses under RESP3"; GEOHASH's array holds nulls too:
    under exactly-once mode a RESP3 client gets the array cut at its first null."""
    alone = _run(redis_server, 3, [command], False)
    once = _run(redis_server, 3, [command], True)
    assert once == alone
