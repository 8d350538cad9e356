"""The async user code of issue 15 (F2; tests/test_attack15.py until eff6abf), as written:
correct code passes mypy --strict, the forgotten await is an error."""

import attrs

import redmodel


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    color: str = redmodel.field(index=True)
    quantity: int = 0
    id: str = redmodel.key_field()


async def correct(astore: redmodel.AsyncStore) -> None:
    hats: list[Hat] = await astore.find(Hat, color="black").all()
    first: Hat | None = await astore.find(Hat).first()
    jobs = redmodel.containers.Queue(astore, "jobs", int)
    length: int = await jobs.push(1, 2)
    print(hats, first, length)


async def wrong(astore: redmodel.AsyncStore) -> None:
    forgot: list[Hat] = astore.find(Hat).all()  # E: Incompatible types in assignment (expression has type "Coroutine[object, object, list[Hat]]", variable has type "list[Hat]")  [assignment] # N: Maybe you forgot to use "await"?
    print(forgot)
