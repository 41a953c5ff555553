"""Typed errors of the library: each has a message, the user's next step and an exit code.

The library raises these; only the CLI renders them (message, hint, exit code; never a
traceback). Exit codes are the contract of DESIGN.md §6:

    0 ok · 1 error · 2 usage · 3 build failed · 4 deploy failed (rolled back) ·
    5 timed out waiting · 6 cannot reach Nomad/S3

Hierarchy::

    NomadPaasError (1)
     ├── InvalidInput (2)            bad app name, config key, flag value, file
     ├── NotFound (1)                app, release, variable that does not exist
     ├── AlreadyExists (1)           app name taken
     ├── Conflict (1)                a concurrent writer won a CAS race we could not retry
     ├── PermissionDenied (1)        the token is missing or lacks a capability
     ├── BuildFailed (3)
     ├── DeployFailed (4)
     ├── TimedOut (5)
     └── Unreachable (6)
          ├── NomadUnreachable (6)
          └── StorageUnreachable (6)
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "BuildFailed",
    "Conflict",
    "DeployFailed",
    "InvalidInput",
    "NomadPaasError",
    "NomadUnreachable",
    "NotFound",
    "PermissionDenied",
    "StorageUnreachable",
    "TimedOut",
    "Unreachable",
]


class NomadPaasError(Exception):
    """Base of every error the library raises on purpose.

    Parameters:
        message: what failed, in one sentence, naming the thing that failed.
        hint: the user's next step ("run `nomadpaas up`", "check NOMAD_TOKEN").
    """

    exit_code: int = 1
    default_hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def to_dict(self) -> dict[str, object]:
        """The JSON form the CLI prints with `--json`."""
        return {
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.hint,
            "exit_code": self.exit_code,
        }


class InvalidInput(NomadPaasError):
    """The user gave something malformed: nothing was changed."""

    exit_code = 2


class NotFound(NomadPaasError):
    """The named object does not exist."""


class AlreadyExists(NomadPaasError):
    """The object to create exists already."""


class Conflict(NomadPaasError):
    """A check-and-set write lost against another writer and could not be retried."""

    default_hint = "Someone else changed it at the same time; run the command again."


class PermissionDenied(NomadPaasError):
    """The server refused the credentials."""

    default_hint = 'Check NOMAD_TOKEN (for the embedded stack: eval "$(nomadpaas up --env)").'


class BuildFailed(NomadPaasError):
    """The build job ran and failed."""

    exit_code = 3


class DeployFailed(NomadPaasError):
    """The deployment failed; Nomad rolled back to the last stable version."""

    exit_code = 4


class TimedOut(NomadPaasError):
    """We stopped waiting; the operation goes on in the cluster."""

    exit_code = 5


class Unreachable(NomadPaasError):
    """A backing service did not answer."""

    exit_code = 6


class NomadUnreachable(Unreachable):
    """Nomad's HTTP API did not answer."""

    default_hint = "Start the embedded stack with `nomadpaas up`, or set NOMAD_ADDR."


class StorageUnreachable(Unreachable):
    """The S3 endpoint did not answer or refused the credentials."""

    default_hint = (
        "Start the embedded stack with `nomadpaas up`, or check NOMADPAAS_S3_ENDPOINT "
        "and the AWS credentials."
    )
