"""Frozen value classes: what ``@dataclass(frozen=True)`` gave, without dataclasses."""

from __future__ import annotations

import copy
import pickle

import pytest

from nomadpaas.frozen import Frozen, FrozenInstanceError, init_fields


class Point(Frozen):
    __match_args__ = ("x", "y", "tags")
    __slots__ = __match_args__
    x: int
    y: int
    tags: tuple[str, ...]

    def __init__(self, x: int, y: int = 0, tags: tuple[str, ...] = ()) -> None:
        init_fields(self, x=x, y=y, tags=tags)


class Other(Frozen):
    __match_args__ = ("x", "y", "tags")
    __slots__ = __match_args__

    def __init__(self, x: int, y: int = 0, tags: tuple[str, ...] = ()) -> None:
        init_fields(self, x=x, y=y, tags=tags)


def test_equality_hash_and_repr_follow_the_fields_in_order() -> None:
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(2, 1)
    assert Point(1) != Other(1)  # another class is never equal, whatever its fields
    assert hash(Point(1, 2, ("a",))) == hash(Point(1, 2, ("a",)))
    assert len({Point(1), Point(1), Point(2)}) == 2
    assert repr(Point(1, 2, ("a",))) == "Point(x=1, y=2, tags=('a',))"


def test_fields_cannot_be_assigned_or_deleted() -> None:
    point = Point(1)
    with pytest.raises(FrozenInstanceError):
        point.x = 5
    with pytest.raises(FrozenInstanceError):
        del point.y
    with pytest.raises(AttributeError):
        point.z = 1
    assert point.x == 1


def test_replace_makes_a_changed_copy() -> None:
    point = Point(1, 2)
    assert point.replace(y=5) == Point(1, 5)
    assert point == Point(1, 2)
    with pytest.raises(TypeError, match="no field"):
        point.replace(z=1)


def test_copies_and_pickles_are_equal() -> None:
    point = Point(1, 2, ("a",))
    assert copy.copy(point) == point
    assert copy.deepcopy(point) == point
    assert pickle.loads(pickle.dumps(point)) == point


def test_match_args_allow_positional_patterns() -> None:
    match Point(3, 4):
        case Point(3, y):
            assert y == 4
        case _:
            pytest.fail("no match")
