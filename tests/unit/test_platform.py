"""Platform over a fake Nomad: apps, config, releases, validation before writing, CAS races."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from testsupport import run_concurrently
from unit.fakenomad import FakeNomad

from nomadpaas import Platform, Settings
from nomadpaas.errors import AlreadyExists, InvalidInput, NotFound
from nomadpaas.models import Release
from nomadpaas.nomad.variables import VariableMetadata

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> FakeNomad:
    return FakeNomad()


def platform_on(fake: FakeNomad) -> Platform:
    return Platform(Settings(domain="paas.test"), client=fake.client(), clock=lambda: NOW)


@pytest.fixture
def platform(fake: FakeNomad) -> Platform:
    return platform_on(fake)


def test_create_list_info_destroy(platform: Platform, fake: FakeNomad) -> None:
    created = platform.create_app("demo")
    platform.create_app("alpha")
    assert created.name == "demo"
    assert created.created_at == NOW
    assert created.web_url == "http://demo.paas.test"
    assert [a.name for a in platform.list_apps()] == ["alpha", "demo"]
    assert platform.app_info("demo") == created
    platform.config_set("demo", {"A": "1"})
    platform.destroy_app("demo")
    assert [a.name for a in platform.list_apps()] == ["alpha"]
    assert not [p for p in fake.variables if p.startswith("nomadpaas/apps/demo")]
    with pytest.raises(NotFound):
        platform.app_info("demo")


def test_duplicate_app_is_already_exists(platform: Platform) -> None:
    platform.create_app("demo")
    with pytest.raises(AlreadyExists) as info:
        platform.create_app("demo")
    assert info.value.exit_code == 1


def test_invalid_name_writes_nothing(platform: Platform, fake: FakeNomad) -> None:
    with pytest.raises(InvalidInput):
        platform.create_app("Bad_Name")
    assert fake.requests == []


def test_missing_app_hints_apps_create(platform: Platform) -> None:
    for call in (
        lambda: platform.app_info("ghost"),
        lambda: platform.config("ghost"),
        lambda: platform.config_set("ghost", {"A": "1"}),
        lambda: platform.releases("ghost"),
        lambda: platform.destroy_app("ghost"),
    ):
        with pytest.raises(NotFound) as info:
            call()
        assert info.value.hint == "Create it with `nomadpaas apps create ghost`."


def test_config_set_get_unset_records_releases(platform: Platform, fake: FakeNomad) -> None:
    platform.create_app("demo")
    v1 = platform.config_set("demo", {"A": "1", "B": "=x"})
    assert (v1.version, v1.description) == (1, "Set A, B config vars")
    assert platform.config("demo").vars == {"A": "1", "B": "=x"}
    assert platform.config_get("demo", "B") == "=x"
    v2 = platform.config_unset("demo", ["A"])
    assert (v2.version, v2.description) == (2, "Unset A config var")
    assert v2.config == {"B": "=x"}
    assert platform.release_info("demo", "v1").config == {"A": "1", "B": "=x"}
    assert platform.release_info("demo", 2) == v2
    v3 = platform.config_unset("demo", ["B"])
    assert v3.config == {}
    # Nomad refuses empty variables: no config means no config variable.
    assert "nomadpaas/apps/demo/config" not in fake.variables
    assert platform.config("demo").vars == {}
    assert [r.version for r in platform.releases("demo")] == [3, 2, 1]
    assert platform.app_info("demo").latest_release == 3
    with pytest.raises(NotFound):
        platform.config_get("demo", "B")


def test_config_release_keeps_the_previous_slug(platform: Platform, fake: FakeNomad) -> None:
    from nomadpaas import releases
    from nomadpaas.nomad.variables import Variables

    platform.create_app("demo")
    store = Variables(fake.client())
    releases.create(
        store,
        Release(
            app="demo",
            version=0,
            description="Deploy abc1234",
            created_at=NOW,
            slug_key="slugs/demo/abc.tar.gz",
            slug_sha256="abc",
            process_types={"web": "python app.py"},
            formation={"web": 1},
            source_digest="src",
        ),
    )
    v2 = platform.config_set("demo", {"A": "1"})
    assert (v2.slug_key, v2.slug_sha256, v2.source_digest) == (
        "slugs/demo/abc.tar.gz",
        "abc",
        "src",
    )
    assert v2.process_types == {"web": "python app.py"}
    assert v2.formation == {"web": 1}
    assert platform.release_info("demo", "v2") == v2


def test_bad_config_input_writes_nothing(platform: Platform, fake: FakeNomad) -> None:
    platform.create_app("demo")
    before = list(fake.writes())
    for values in ({"1BAD": "x"}, {"OK": "1", "A-B": "2"}, {"A": "nul\x00"}, {}):
        with pytest.raises(InvalidInput):
            platform.config_set("demo", values)
    with pytest.raises(InvalidInput):
        platform.config_set("demo", {"BIG": "x" * (64 * 1024)})
    with pytest.raises(InvalidInput):
        platform.config_unset("demo", ["not-a-key"])
    assert fake.writes() == before


def test_config_that_fits_but_whose_release_would_not_is_refused_before_writing(
    platform: Platform, fake: FakeNomad
) -> None:
    platform.create_app("demo")
    before = list(fake.writes())
    # Quotes double in the JSON snapshot, so the config fits while the release does not.
    with pytest.raises(InvalidInput) as info:
        platform.config_set("demo", {"Q": '"' * 40_000})
    assert "64 KiB" in info.value.message
    assert fake.writes() == before


def test_config_write_retries_after_a_lost_cas_race(platform: Platform, fake: FakeNomad) -> None:
    platform.create_app("demo")
    fake.inject_conflicts["nomadpaas/apps/demo/config"] = 3
    fake.inject_conflicts["nomadpaas/apps/demo"] = 2
    release = platform.config_set("demo", {"A": "1"})
    assert release.version == 1
    assert platform.config("demo").vars == {"A": "1"}


def test_release_info_parses_versions_and_reports_missing(platform: Platform) -> None:
    platform.create_app("demo")
    platform.config_set("demo", {"A": "1"})
    assert platform.release_info("demo", "1").version == 1
    with pytest.raises(NotFound) as info:
        platform.release_info("demo", "v9")
    assert "v9" in info.value.message
    with pytest.raises(InvalidInput):
        platform.release_info("demo", "nine")


def test_racing_writers_never_share_a_release_number(fake: FakeNomad) -> None:
    platform_on(fake).create_app("demo")
    fake.latency_s = 0.001
    writers, per_writer = 8, 5
    results: list[int] = []
    barrier = threading.Barrier(writers, timeout=30)

    def writer(n: int) -> None:
        platform = platform_on(fake)
        barrier.wait()
        for i in range(per_writer):
            results.append(platform.config_set("demo", {f"W{n}_{i}": "x"}).version)

    run_concurrently(writer, writers, timeout_s=60)
    assert sorted(results) == list(range(1, writers * per_writer + 1))
    stored = platform_on(fake).releases("demo")
    assert sorted(r.version for r in stored) == sorted(results)
    # Every set survived the config CAS races, and the newest release runs all of them.
    current = platform_on(fake).config("demo").vars
    assert len(current) == writers * per_writer
    assert stored[0].config == current


def test_platform_reads_settings_from_env_when_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOMAD_ADDR", "http://127.0.0.1:1")
    monkeypatch.setenv("NOMADPAAS_DOMAIN", "Example.COM")
    assert Platform().settings.domain == "example.com"


def test_racing_counter_bumps_hand_out_distinct_contiguous_numbers(fake: FakeNomad) -> None:
    from nomadpaas import apps
    from nomadpaas.nomad.variables import Variables

    platform_on(fake).create_app("demo")
    fake.latency_s = 0.001
    writers, per_writer = 6, 10
    numbers: list[int] = []
    barrier = threading.Barrier(writers, timeout=30)

    def writer() -> None:
        store = Variables(fake.client())
        barrier.wait()
        numbers.extend(apps.next_release_number(store, "demo") for _ in range(per_writer))

    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(numbers) == list(range(1, writers * per_writer + 1))


def test_non_string_values_are_invalid_input(platform: Platform, fake: FakeNomad) -> None:
    platform.create_app("demo")
    with pytest.raises(InvalidInput):
        platform.config_set("demo", {"PORT": 5000})  # type: ignore[dict-item]


def test_newest_release_has_the_newest_config_even_when_writers_interleave(
    fake: FakeNomad,
) -> None:
    """W1 writes config, W2 writes config *and* records v1, then W1 records v2: v2 must not
    roll back W2's change."""
    from nomadpaas import config
    from nomadpaas.nomad.variables import Variable, Variables

    platform = platform_on(fake)
    platform.create_app("demo")
    real = Variables(fake.client())

    class InterleavingStore:
        def __init__(self) -> None:
            self.fired = False

        def get(self, path: str) -> Variable | None:
            return real.get(path)

        def put(self, path: str, items: Mapping[str, str], cas: int | None = None) -> Variable:
            written = real.put(path, items, cas)
            if path.endswith("/config") and not self.fired:
                self.fired = True
                platform.config_set("demo", {"B": "2"})  # W2, start to finish
            return written

        def delete(self, path: str, cas: int | None = None) -> None:
            real.delete(path, cas)

        def list(self, prefix: str = "") -> list[VariableMetadata]:
            return real.list(prefix)

    w1 = config.update(InterleavingStore(), "demo", NOW, set_values={"A": "1"})
    assert w1.version == 2
    assert platform.config("demo").vars == {"A": "1", "B": "2"}
    assert platform.release_info("demo", "v2").config == {"A": "1", "B": "2"}


def test_build_given_the_config_reads_no_variable(
    platform: Platform, fake: FakeNomad, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nomadpaas.build

    platform.create_app("demo")
    platform.config_set("demo", {"A": "1"})
    passed: list[Mapping[str, str] | None] = []

    def run_build(*args: object, **kwargs: object) -> str:
        passed.append(kwargs["config"])  # type: ignore[arg-type]
        return "built"

    monkeypatch.setattr(nomadpaas.build, "run_build", run_build)
    monkeypatch.setattr(Platform, "storage", None)  # not needed by the stand-in
    fake.requests.clear()
    assert platform.build("demo", ".", config_vars={"B": "2"}) == "built"  # type: ignore[comparison-overlap]
    assert fake.requests == [] and passed == [{"B": "2"}]
    # Without it, the app is checked and its config read: one read each.
    assert platform.build("demo", ".") == "built"  # type: ignore[comparison-overlap]
    assert passed[-1] == {"A": "1"}
    assert sorted(p for m, p in fake.requests if m == "GET") == [
        "/v1/var/nomadpaas/apps/demo",
        "/v1/var/nomadpaas/apps/demo/config",
    ]
    with pytest.raises(NotFound):
        platform.build("ghost", ".")


class _ClosableStorage:
    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def test_close_closes_the_storage_it_opened_and_only_that(
    fake: FakeNomad, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nomadpaas.storage.s3 import S3Storage

    opened: list[_ClosableStorage] = []

    def from_settings(settings: Settings) -> _ClosableStorage:
        opened.append(_ClosableStorage())
        return opened[-1]

    monkeypatch.setattr(S3Storage, "from_settings", staticmethod(from_settings))
    owned = platform_on(fake)
    assert owned.storage is opened[0]
    owned.close()
    assert opened[0].closed == 1
    assert owned.storage is opened[1]  # opened again on the next use
    owned.close()

    given = _ClosableStorage()
    with Platform(Settings(), client=fake.client(), storage=given) as borrowed:  # type: ignore[arg-type]
        assert borrowed.storage is given
    assert given.closed == 0  # the caller's: left open
