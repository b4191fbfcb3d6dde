"""The books sensor over a tmp books folder, evaluated as the daemon does (run requests resolved
against the definitions): new file -> partition added and ingested; unchanged -> nothing;
changed or reverted -> a run with a new run key; removed -> partition deleted and knowledge
rebuilt; a missing folder never deletes; register_books for the CLI."""

import hashlib
import json
from pathlib import Path

import dagster as dg
import pytest

from factory_pipeline.defs.knowledge.assets import (
    book_pages,
    kb_concepts,
    kb_segments,
    strategy_modules,
)
from factory_pipeline.defs.knowledge.partitions import BOOKS_PARTITIONS_NAME
from factory_pipeline.defs.knowledge.resources import KnowledgeResource, knowledge_resource
from factory_pipeline.defs.knowledge.sensors import books_sensor, register_books
from factory_pipeline.defs.resources import build_resources
from factory_pipeline.settings import load_settings


@pytest.fixture(scope="module")
def definitions(tmp_path_factory) -> dg.Definitions:
    """The sensor with its targets, as the daemon resolves them (resources never initialized)."""
    settings = load_settings(data_dir=tmp_path_factory.mktemp("data"), embedding_backend="hash")
    return dg.Definitions(
        assets=[book_pages, kb_segments, kb_concepts, strategy_modules],
        sensors=[books_sensor],
        resources=build_resources(settings) | {"knowledge": knowledge_resource(settings)},
    )


def _book_id(name: str) -> str:
    """The documented id rule, computed independently: stable_id('book', file name)."""
    digest = hashlib.sha256(json.dumps([name], sort_keys=True).encode()).hexdigest()
    return f"book-{digest[:16]}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def tick(instance, definitions):
    """One sensor evaluation; partition requests are applied to the instance as the daemon does."""

    def evaluate(folders: list[Path], cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=instance,
            instance_ref=instance.get_ref(),
            cursor=cursor,
            resources={"knowledge": KnowledgeResource(books_dirs=[str(f) for f in folders])},
            definitions=definitions,
        )
        data = books_sensor.evaluate_tick(context)
        for request in data.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
            else:
                for key in request.partition_keys:
                    instance.delete_dynamic_partition(request.partitions_def_name, key)
        return data

    return evaluate


def _keys(instance) -> set[str]:
    return set(instance.get_dynamic_partitions(BOOKS_PARTITIONS_NAME))


def test_new_unchanged_changed_reverted_and_removed_books(tmp_path, instance, tick):
    books = tmp_path / "books"
    books.mkdir()
    alpha = books / "alpha.md"
    alpha.write_text("# Alpha\n\nBuy the breakout above the range high.\n")
    alpha_id = _book_id("alpha.md")
    first_hash = _sha(alpha)

    new = tick([books], None)
    assert [(r.partitions_def_name, r.partition_keys) for r in new.dynamic_partitions_requests] == [
        ("books", [alpha_id])
    ]
    assert [r.partition_key for r in new.run_requests] == [alpha_id]
    assert new.run_requests[0].run_key.startswith(f"{alpha_id}:{first_hash}:")
    assert set(new.run_requests[0].asset_selection) == {
        dg.AssetKey("book_pages"),
        dg.AssetKey("kb_segments"),
    }
    assert json.loads(new.cursor) == {alpha_id: first_hash}
    assert _keys(instance) == {alpha_id}

    unchanged = tick([books], new.cursor)
    assert unchanged.run_requests == []
    assert not unchanged.dynamic_partitions_requests
    assert unchanged.cursor == new.cursor

    alpha.write_text("# Alpha\n\nBuy the breakout above the range high on volume.\n")
    changed = tick([books], unchanged.cursor)
    assert not changed.dynamic_partitions_requests  # same file name: same partition
    assert [r.partition_key for r in changed.run_requests] == [alpha_id]
    assert changed.run_requests[0].run_key.startswith(f"{alpha_id}:{_sha(alpha)}:")
    assert changed.run_requests[0].run_key != new.run_requests[0].run_key

    alpha.write_text("# Alpha\n\nBuy the breakout above the range high.\n")  # revert
    reverted = tick([books], changed.cursor)
    assert [r.partition_key for r in reverted.run_requests] == [alpha_id]
    assert reverted.run_requests[0].run_key.startswith(f"{alpha_id}:{first_hash}:")
    assert reverted.run_requests[0].run_key != new.run_requests[0].run_key

    alpha.unlink()
    removed = tick([books], reverted.cursor)
    deletes = [
        r
        for r in removed.dynamic_partitions_requests
        if isinstance(r, dg.DeleteDynamicPartitionsRequest)
    ]
    assert [r.partition_keys for r in deletes] == [[alpha_id]]
    assert len(removed.run_requests) == 1
    rebuild = removed.run_requests[0]
    assert rebuild.partition_key is None
    assert set(rebuild.asset_selection) == {
        dg.AssetKey("kb_concepts"),
        dg.AssetKey("strategy_modules"),
    }
    assert json.loads(removed.cursor) == {}
    assert _keys(instance) == set()


def test_two_new_books_in_one_tick(tmp_path, instance, tick):
    books = tmp_path / "books"
    (books / "sub").mkdir(parents=True)
    (books / "one.txt").write_text("Risk one percent of equity per trade.\n")
    (books / "sub" / "two.md").write_text("# Two\n\nExit on a close below the 20 EMA.\n")
    (books / "notes.csv").write_text("not a book\n")
    result = tick([books], None)
    expected = sorted([_book_id("one.txt"), _book_id("two.md")])
    assert result.dynamic_partitions_requests[0].partition_keys == expected
    assert sorted(r.partition_key for r in result.run_requests) == expected
    assert len({r.run_key for r in result.run_requests}) == 2


def test_missing_folder_suppresses_deletions_and_keeps_the_cursor(tmp_path, instance, tick):
    books, extra = tmp_path / "books", tmp_path / "extra"
    books.mkdir()
    extra.mkdir()
    (books / "a.txt").write_text("Trade the trend on the daily chart.\n")
    (extra / "b.txt").write_text("Trail the stop under the last swing low.\n")
    first = tick([books, extra], None)
    assert len(first.run_requests) == 2

    (extra / "b.txt").unlink()
    extra.rmdir()  # looks like an unmounted disk
    quiet = tick([books, extra], first.cursor)
    assert quiet.run_requests == []
    assert not quiet.dynamic_partitions_requests
    assert json.loads(quiet.cursor) == json.loads(first.cursor)
    assert _book_id("b.txt") in _keys(instance)


def test_register_books_adds_new_and_removes_vanished_partitions(tmp_path, instance):
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text("Trade the trend on the daily chart.\n")
    (books / "b.md").write_text("# B\n\nTrail the stop under the last swing low.\n")
    instance.add_dynamic_partitions(BOOKS_PARTITIONS_NAME, ["book-gone"])
    settings = load_settings(data_dir=tmp_path)

    keys = register_books(instance, settings)
    assert keys == sorted([_book_id("a.txt"), _book_id("b.md")])
    assert _keys(instance) == set(keys)
    assert register_books(instance, settings) == keys  # idempotent


def test_register_books_without_any_folder_names_the_folders(tmp_path, instance):
    from factory_pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="books"):
        register_books(instance, load_settings(data_dir=tmp_path / "nothing"))
