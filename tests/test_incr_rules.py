"""The plugin and the store apply one rule to incr/incr_fields
(redmodel._models._specs.increment_kind): every call in tests/typing/incr_rules.py that
mypy (with redmodel.mypy) reports, tests/test_typing.py checks; here the same calls run
against a real server. Each ``bad_*`` raises ValidationError and writes nothing; each
``good_*`` works. A fixture line the plugin flags but the store accepts (or the reverse)
fails one of the two files."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import redis

import redmodel

FIXTURE = Path(__file__).resolve().parent / "typing" / "incr_rules.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tests_typing_incr_rules", FIXTURE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the model's annotations resolve in its module
    spec.loader.exec_module(module)
    return module


RULES = _load()
BAD = sorted(name for name in vars(RULES) if name.startswith(("bad_", "abad_")))


def _saved(store: redmodel.Store) -> str:
    obj = RULES.Child(id="one")
    store.save(obj)
    return str(obj.id)


def test_the_accepted_calls_work(store: redmodel.Store) -> None:
    id = _saved(store)
    RULES.good_sync(store, id)
    got = store.get(RULES.Child, id)
    assert (got.count, got.ratio, got.box.n, got.box.plain) == (3, 2.0, 1, -1)


@pytest.mark.parametrize("name", BAD)
def test_every_call_the_plugin_reports_is_refused_before_writing(
        name: str, store: redmodel.Store, redis_client: redis.Redis, redis_url: str) -> None:
    assert len(BAD) == 12
    id = _saved(store)
    before = {k: redis_client.dump(k) for k in redis_client.keys("*")}
    call: Any = getattr(RULES, name)
    with pytest.raises(redmodel.ValidationError):
        if inspect.iscoroutinefunction(call):
            async def run() -> None:
                async with redmodel.AsyncStore.from_url(redis_url) as astore:
                    await call(astore, id)
            asyncio.run(run())
        else:
            call(store, id)
    assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == before
