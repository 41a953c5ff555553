"""Release records: Items encoding (strings only), decoding, sizing, JSON form."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from unit.fakenomad import FakeNomad

from nomadpaas import apps, releases
from nomadpaas.errors import InvalidInput
from nomadpaas.models import App, ConfigVars, Release, iso, parse_iso
from nomadpaas.nomad.variables import Variable, Variables

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

FULL = Release(
    app="demo",
    version=7,
    description="Deploy abc1234",
    created_at=NOW,
    status="succeeded",
    config={"B": "2", "A": "1"},
    slug_key="slugs/demo/abc.tar.gz",
    slug_sha256="ab" * 32,
    process_types={"web": "gunicorn app:app"},
    formation={"web": 2, "worker": 0},
    source_digest="cd" * 32,
)
BARE = Release(app="demo", version=1, description="Set A config var", created_at=NOW)


@pytest.mark.parametrize("release", [FULL, BARE])
def test_encode_is_strings_only_and_decodes_back(release: Release) -> None:
    items = releases.encode(release)
    assert all(isinstance(v, str) for v in items.values())
    variable = Variable(path=f"nomadpaas/apps/demo/releases/v{release.version}", items=items)
    assert releases.decode("demo", variable) == release


def test_missing_optional_fields_are_left_out_not_written_as_none() -> None:
    items = releases.encode(BARE)
    assert "slug_key" not in items
    assert json.loads(items["config"]) == {}


def test_decode_tolerates_a_sparse_record() -> None:
    variable = Variable(path="nomadpaas/apps/demo/releases/v3", items={"description": "x"})
    release = releases.decode("demo", variable)
    assert (release.version, release.status, release.config) == (3, "succeeded", {})


def test_check_size_refuses_releases_over_64_kib() -> None:
    releases.check_size(FULL)
    big = Release(
        app="demo", version=1, description="d", created_at=NOW, config={"A": "x" * 66_000}
    )
    with pytest.raises(InvalidInput):
        releases.check_size(big)


def test_to_dict_is_json_ready() -> None:
    doc = FULL.to_dict()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["name"] == "v7"
    assert doc["created_at"] == "2026-11-28T12:00:00Z"
    assert list(doc["config"]) == ["A", "B"]
    app = App(name="demo", created_at=NOW, latest_release=7, web_url="http://demo.localhost")
    assert app.to_dict()["latest_release"] == 7
    assert ConfigVars(app="demo", vars={"B": "1", "A": "2"}).to_dict() == {"A": "2", "B": "1"}


def test_iso_roundtrip() -> None:
    assert parse_iso(iso(NOW)) == NOW
    assert parse_iso(None) == datetime.fromtimestamp(0, UTC)


def _store_with_app() -> tuple[FakeNomad, Variables]:
    fake = FakeNomad()
    store = Variables(fake.client())
    apps.create(store, "demo", NOW)
    return fake, store


def test_create_with_the_app_record_read_earlier_saves_that_read() -> None:
    fake, store = _store_with_app()
    record = apps.record(store, "demo")
    fake.requests.clear()
    made = releases.create(store, replace(BARE, version=0), app_record=record)
    assert made.version == 1
    assert fake.requests == [
        ("PUT", "/v1/var/nomadpaas/apps/demo"),  # the number, at the record's index
        ("GET", "/v1/var/nomadpaas/apps/demo/config"),  # the snapshot, after it
        ("PUT", "/v1/var/nomadpaas/apps/demo/releases/v1"),
    ]


def test_a_stale_app_record_falls_back_and_never_reuses_a_number() -> None:
    _, store = _store_with_app()
    stale = apps.record(store, "demo")
    releases.create(store, replace(BARE, version=0))  # someone else took v1 meanwhile
    made = releases.create(store, replace(BARE, version=0, description="mine"), app_record=stale)
    assert made.version == 2
    assert [(r.version, r.description) for r in releases.list_releases(store, "demo")] == [
        (2, "mine"),
        (1, BARE.description),
    ]


def test_a_config_read_after_the_record_is_the_snapshot_if_the_number_is_taken_at_it() -> None:
    fake, store = _store_with_app()
    store.put("nomadpaas/apps/demo/config", {"A": "1"})
    record = apps.record(store, "demo")
    read = dict(store.get("nomadpaas/apps/demo/config").items)  # type: ignore[union-attr]
    fake.requests.clear()
    taken = releases.reserve(store, "demo", app_record=record, config_read=read)
    assert taken.number == 1 and taken.config == {"A": "1"}
    assert fake.requests == [("PUT", "/v1/var/nomadpaas/apps/demo")]  # no second read
    made = releases.create(store, replace(BARE, version=0), reserved=taken)
    assert made.version == 1 and made.config == {"A": "1"}


def test_a_number_taken_by_a_config_write_meanwhile_makes_the_snapshot_read_again() -> None:
    fake, store = _store_with_app()
    record = apps.record(store, "demo")
    read: dict[str, str] = {}  # the config as the caller read it: empty
    # A `config set` after that read: its write, then its number (v1), then its release.
    store.put("nomadpaas/apps/demo/config", {"A": "2"})
    releases.create(store, replace(BARE, version=0))
    fake.requests.clear()
    taken = releases.reserve(store, "demo", app_record=record, config_read=read)
    # The bump at the stale index lost: the number is v2, and the snapshot is read after
    # it, so the newest release holds the config the older one was made for.
    assert taken.number == 2 and taken.config == {"A": "2"}
    assert ("GET", "/v1/var/nomadpaas/apps/demo/config") in fake.requests
