"""The build log's conventions: the `Log` callable its lines go to, and warnings.

Lines follow Heroku's style (``-----> `` steps, 7-space details); a warning is shown as
`` !     Warning: …`` and also kept, for `slug.json`'s `warnings`.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Log", "warn"]

Log = Callable[[str], None]


def warn(emit: Log, warnings: list[str], message: str) -> None:
    """Show `message` as a warning and keep it in `warnings`."""
    warnings.append(message)
    emit(f" !     Warning: {message}")
