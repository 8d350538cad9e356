"""Field specifiers: mypy knows which fields are required, defaulted or keyword-only, as
the class behaves at run time (with the plugin ``redmodel.mypy``)."""

import attrs

import redmodel


@redmodel.model(prefix="hat")
@attrs.define
class Hat:
    color: str = redmodel.field(index=True)
    price: float = redmodel.field(index="range")
    quantity: int = redmodel.field(default=0)
    tags: list[str] = redmodel.field(factory=list)
    note: str | None = None
    id: str = redmodel.key_field()


reveal_type(Hat)  # N: Revealed type is "def (color: str, price: float, quantity: int =, tags: list[str] =, note: str | None =, id: str =) -> tests.typing.models.Hat"
Hat()  # E: Missing positional arguments "color", "price" in call to "Hat"  [call-arg]
Hat("black")  # E: Missing positional argument "price" in call to "Hat"  [call-arg]
hat = Hat("black", 49.99)
reveal_type(hat.quantity)  # N: Revealed type is "int"
Hat(color="black", price=1.0, quantity="3")  # E: Argument "quantity" to "Hat" has incompatible type "str"; expected "int"  [arg-type]


@redmodel.model(prefix="user")
@attrs.define
class User:
    id: str = redmodel.key_field(generated=False)  # keyword-only, so it may come first
    name: str = ""
    email: str = redmodel.field(unique=True, kw_only=True)


reveal_type(User)  # N: Revealed type is "def (name: str =, *, id: str, email: str) -> tests.typing.models.User"
User(id="alice", email="a@example.com")
User("alice")  # E: Missing named argument "id" for "User"  [call-arg] # E: Missing named argument "email" for "User"  [call-arg]


@redmodel.model(prefix="rest")
@attrs.define
class Restaurant:
    note: str = ""
    id: int = redmodel.field(key=True)  # E: Non-default attributes not allowed after default attributes.  [misc]


@attrs.define
class Wrong:
    count: int = redmodel.field(default="zero")  # E: Incompatible types in assignment (expression has type "str", variable has type "int")  [assignment]
    made: list[int] = redmodel.field(factory=dict)  # E: Argument "factory" to "field" has incompatible type "type[dict[_KT, _VT]]"; expected "Callable[[], list[int]]"  [arg-type]


def generated(flag: bool) -> None:
    @redmodel.model
    @attrs.define
    class Odd:
        id: str = redmodel.key_field(generated=flag)  # E: "generated" argument to key_field must be a True or False literal  [redmodel]
