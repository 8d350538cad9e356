"""Attack 32H on fix 32E: a class whose own declaration makes its values secret is never
written to Redis in plaintext by anything holding it (docs/codecs.md, "Never skipped")."""

import itertools

import attrs
import pytest

import redmodel
from tests.plaintext import dump

SECRET = "SECRET-987-65-4321"
_N = itertools.count()


def _classes() -> tuple[type, type]:
    @attrs.define
    class Base:
        number: str
        numbers: list[str] = attrs.Factory(list)

    @attrs.define
    class Sub(Base):
        id: str = ""

    return Base, Sub


@pytest.mark.parametrize("holder", ["hash", "flat", "blob", "queue"])
def test_f1_a_subclass_declared_secret_after_one_of_its_objects_was_saved_is_stored_in_plaintext(
        store: redmodel.Store, fresh_keys: None, holder: str) -> None:
    """docs/codecs.md, "Never skipped": "An object of a subclass that is secret beyond the
    declared class (a model whose chain encrypts, ...) given where its plain base class is
    declared would be stored as the base, in plaintext: the save raises `ValidationError`
    before anything is written, unless that value is encrypted whole there." and "the order
    of declarations must not decide" (check_not_held). Here the subclass becomes a model
    whose chain encrypts only after one (public) object of it was saved through the
    holder: the holder's checker remembers the subclass as "adds nothing" and stores the
    next, secret, object field by field in plaintext.

    Since session 37 no object of a strict subclass is held where its base is declared
    (docs/models.md, "A subclass where its base is declared"): the public one is refused
    too, and the secret one still never reaches Redis."""
    n = next(_N)
    base, sub = _classes()
    public = sub(number="public", numbers=["public"])
    if holder == "queue":
        q = redmodel.containers.Queue(store, f"atkh_q{n}", base)
        with pytest.raises(redmodel.ValidationError, match="where Base is declared"):
            q.push(public)
    else:
        cls = attrs.make_class(f"H{n}", {"id": attrs.field(type=str),
                                         "c": attrs.field(type=base)})
        h = redmodel.model(prefix=f"atkh_h{n}", key="id", layout=holder)(cls)
        with pytest.raises(redmodel.ValidationError, match="where Base is declared"):
            store.save(h(id="a", c=public))
    assert store.client.dbsize() == 0
    # Sub is now declared a model whose chain encrypts (not refused: Sub was never held
    # by a declaration, only its base is)
    redmodel.model(prefix=f"atkh_s{n}", key="id", layout="blob", codec="json|fernet")(sub)
    secret = sub(number=SECRET, numbers=[SECRET])
    try:
        if holder == "queue":
            q.push(secret)
        else:
            store.save(h(id="b", c=secret))
    except redmodel.ValidationError as e:
        assert SECRET not in str(e)
    found = dump(store.client)
    assert SECRET.encode() not in found, found[-300:]
