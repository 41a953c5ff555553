"""The public surface: every name in `nomadpaas.__all__` resolves; importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import nomadpaas


def test_every_public_name_resolves() -> None:
    for name in nomadpaas.__all__:
        assert getattr(nomadpaas, name) is not None, name
    assert nomadpaas.Platform.__module__ == "nomadpaas.platform"
    assert issubclass(nomadpaas.NotFound, nomadpaas.NomadPaasError)


def test_import_is_lazy() -> None:
    code = (
        "import sys, nomadpaas, nomadpaas.cli.apps, nomadpaas.cli.config, nomadpaas.cli.releases;"
        "print(sorted(m for m in ('nomadpaas.platform', 'nomadpaas.nomad', 'nomadpaas.releases')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        nomadpaas.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
