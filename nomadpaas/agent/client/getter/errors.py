"""The artifact failure type; mirrors client/allocrunner/taskrunner/getter/error.go."""

from __future__ import annotations


class ArtifactError(Exception):
    """An artifact could not be fetched; `message` goes into the `Failed Artifact Download` event.

    `recoverable` tells the task runner whether the restart policy may retry: network
    trouble and 5xx answers are recoverable, a refused archive or a checksum mismatch is not.
    """

    def __init__(self, message: str, recoverable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.recoverable = recoverable
