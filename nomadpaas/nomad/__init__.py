"""Typed HTTP client for Nomad's API (a real cluster or the embedded agent); mirrors api/."""

from nomadpaas.nomad.client import NomadClient, NomadConflict, NomadNotFound, QueryResult
from nomadpaas.nomad.variables import CasConflict, Variable, VariableMetadata, Variables

__all__ = [
    "CasConflict",
    "NomadClient",
    "NomadConflict",
    "NomadNotFound",
    "QueryResult",
    "Variable",
    "VariableMetadata",
    "Variables",
]
