"""Immutable value classes without `dataclasses`, for modules the build task imports.

The build task is a fresh process per push, so its imports are part of every build:
`dataclasses` pulls in `inspect` (and ast, dis, tokenize…) and runs `exec` for each
decorated class, several milliseconds together. A class here lists its fields in
`__slots__`, sets them in `__init__` through `object.__setattr__`, and gets from `Frozen`
what ``@dataclass(frozen=True)`` gave: equality and hash over the fields, a readable
repr, assignment refused, and ``replace``.

    class Point(Frozen):
        __match_args__ = ("x", "y")
        __slots__ = __match_args__
        x: int
        y: int

        def __init__(self, x: int, y: int = 0) -> None:
            init_fields(self, x=x, y=y)
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing `typing` at run time
if TYPE_CHECKING:
    from typing import Any, ClassVar, Self

__all__ = ["Frozen", "FrozenInstanceError", "init_fields"]


class FrozenInstanceError(AttributeError):
    """Assigning to (or deleting) a field of a Frozen instance."""


class Frozen:
    """Base of the value classes: the fields are `__match_args__`, in order (as a
    dataclass sets it), and the subclass's `__slots__` are the same names."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frozen) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{self.__class__.__qualname__}({fields})"

    def __reduce__(self) -> tuple[object, ...]:
        # pickle and copy would set the fields back through __setattr__, which refuses.
        return (_rebuild, (self.__class__, self._values()))

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (``dataclasses.replace``)."""
        values: dict[str, Any] = {name: getattr(self, name) for name in self.__match_args__}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"{self.__class__.__name__} has no field(s) {sorted(unknown)}")
        values.update(changes)
        return self.__class__(**values)


def _rebuild(cls: type[Frozen], values: tuple[object, ...]) -> Frozen:
    instance = cls.__new__(cls)
    init_fields(instance, **dict(zip(cls.__match_args__, values, strict=True)))
    return instance


def init_fields(instance: Frozen, **values: object) -> None:
    """Set the fields of a Frozen instance (for its `__init__`)."""
    for name, value in values.items():
        object.__setattr__(instance, name, value)
