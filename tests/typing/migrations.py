"""redmodel.migrations: typed for users (tests/test_typing.py checks the comments)."""

import attrs

import redmodel
from redmodel.migrations import MigrationProgress, Migrations, build_index, rebucket, rewrite


@redmodel.model(prefix="typed_mig")
@attrs.define
class Item:
    name: str = redmodel.field(index=True)
    id: str = redmodel.key_field()


@redmodel.model(prefix="typed_other")
@attrs.define
class Other:
    id: str = redmodel.key_field()


@redmodel.model(prefix="typed_spread", buckets=4)
@attrs.define
class Spread:
    id: str = redmodel.key_field()


store = redmodel.Store.from_url()
astore = redmodel.AsyncStore.from_url()
m = Migrations("shop")
m.add("0001", rewrite(Item))
m.add("0002", build_index(Item, "name"))


@m.step("0003", Item)
def fill(item: Item) -> Item | None:
    return item


def shown(p: MigrationProgress) -> None:
    print(p.done, p.total, p.eta)


reveal_type(m.apply(store, progress=shown))  # N: Revealed type is "list[redmodel._migrate.StepRecord]"
reveal_type(m.status(store).pending)  # N: Revealed type is "tuple[redmodel._migrate.StepState, ...]"
reveal_type(m.plan(store).steps[0].objects)  # N: Revealed type is "int | None"
m.add("0005", rebucket(Spread, from_buckets=None))
reveal_type(m.status(store).steps[0].offline)  # N: Revealed type is "bool"
rebucket(Spread, from_buckets="2")  # E: Argument "from_buckets" to "rebucket" has incompatible type "str"; expected "int | None"  [arg-type]


async def main() -> None:
    reveal_type(await m.apply(astore))  # N: Revealed type is "list[redmodel._migrate.StepRecord]"


@m.step("0004", Item)  # E: Argument 1 has incompatible type "Callable[[Other], Other]"; expected "Callable[[Item], Item | None]"  [arg-type]
def wrong(other: Other) -> Other:
    return other
