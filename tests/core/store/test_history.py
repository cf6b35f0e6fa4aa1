"""Past generations on a real SQLite file: word search through the FTS5 index (user text never becomes query
syntax), every filter, pages, marks (favourite, rating, note, tags), the trash, and remixing."""

from datetime import datetime, timedelta, timezone

import pytest

from core.store.generations import (get_generation, restore_generation, set_favourite, set_note, set_rating,
                                    trash_generation)
from core.store.history import fts_match_expression, list_generations
from core.store.projects import create_project
from core.store.tags import TagCount, add_tags, list_tags, normalise_tag, remove_tags


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 1, day, hour)


def search(store, **filters) -> list[int]:
    with store.db.session() as session:
        return [generation.id for generation in list_generations(session, page_size=500, **filters).items]


@pytest.fixture
def foxes(store, add_generation):
    """Five generations with known prompts, notes, models, statuses, marks and times (ids in creation order)."""
    rows = [
        dict(prompt="A red fox trotting through fresh snow", model="kelp-small", rating=5, favourite=True,
             created_at=at(1)),
        dict(prompt="Foxes playing in a meadow, cinematic", model="kelp-small", status="failed", created_at=at(2)),
        dict(prompt="an owl at night", note="the fox is hiding", model="kelp-base", rating=3, created_at=at(3)),
        dict(prompt="Café scene, crème brûlée (close-up) -- \"quoted\" NEAR the window*", model="kelp-base",
             rating=4, created_at=at(4)),
        dict(prompt="a blue whale", model="kelp-small", status="queued", created_at=at(5)),
    ]
    return [add_generation(**row) for row in rows]


def test_words_match_case_insensitively_and_as_prefixes(store, foxes):
    red, foxes_meadow, owl, cafe, whale = foxes
    assert search(store, text="fox") == [owl, foxes_meadow, red]  # prefix: "foxes"; the note: owl
    assert search(store, text="FOX") == search(store, text="fox")
    assert search(store, text="fox snow") == [red]  # every word
    assert search(store, text="  meadow   CINEMA ") == [foxes_meadow]
    assert search(store, text="hiding") == [owl]  # notes are searched
    assert search(store, text="cafe creme") == [cafe]  # accents ignored
    assert search(store, text="elephant") == []


@pytest.mark.parametrize("text", ['"quoted"', "window*", "-- NEAR", "(close-up)", '"', "*", "-", "NEAR(", "OR",
                                  "fox AND", "prompt:fox", "NOT fox", "^fox", "fox'", "{}", "a\"b", ")(", "\\"])
def test_query_syntax_in_the_text_is_plain_text(store, foxes, text):
    found = search(store, text=text)  # never raises an FTS5 syntax error
    assert all(isinstance(generation_id, int) for generation_id in found)


def test_special_characters_find_what_they_spell(store, foxes):
    red, _, owl, cafe, _ = foxes
    assert search(store, text='"quoted" NEAR') == [cafe]
    assert search(store, text="(close-up)") == [cafe]
    assert search(store, text="window*") == [cafe]
    assert search(store, text="NOT fox") == []  # both words, not "anything but fox"
    assert search(store, text="fox OR owl") == []  # "or" is a word here; no prompt has all three
    assert search(store, text="* - ()") == search(store)  # no words left: no text filter


def test_match_expression_quotes_every_word():
    assert fts_match_expression('fox "snow" NEAR(a*') == '"fox"* """snow"""* "NEAR(a*"*'
    assert fts_match_expression("  ") is None and fts_match_expression("* -") is None


def test_editing_a_note_updates_the_search(store, foxes):
    _, _, _, _, whale = foxes
    with store.db.session() as session:
        set_note(session, whale, "Great breach shot")
    assert search(store, text="breach") == [whale]
    with store.db.session() as session:
        set_note(session, whale, "")
    assert search(store, text="breach") == []


def test_each_filter(store, foxes):
    red, foxes_meadow, owl, cafe, whale = foxes
    assert search(store, model="kelp-base") == [cafe, owl]
    assert search(store, status="failed") == [foxes_meadow]
    assert search(store, status=("queued", "failed")) == [whale, foxes_meadow]
    assert search(store, favourite=True) == [red]
    assert search(store, favourite=False) == [whale, cafe, owl, foxes_meadow]
    assert search(store, min_rating=4) == [cafe, red]
    assert search(store, since=at(2), until=at(4)) == [owl, foxes_meadow]  # since inclusive, until not
    aware = datetime(2026, 1, 4, 13, tzinfo=timezone(timedelta(hours=1)))  # 12:00 UTC
    assert search(store, since=aware) == [whale, cafe]
    assert search(store, model="kelp-small", status="done", min_rating=5, text="fox") == [red]
    assert search(store, order="oldest") == foxes


def test_project_and_tag_filters(store, foxes):
    red, foxes_meadow, owl, _, _ = foxes
    with store.db.session() as session:
        project = create_project(session, "foxes")
        get_generation(session, red).project_id = project.id
        get_generation(session, owl).project_id = project.id
        add_tags(session, red, ["Winter ", "fox"])
        add_tags(session, foxes_meadow, "fox")
    assert search(store, project_id=project.id) == [owl, red]
    assert search(store, tag=" FOX") == [foxes_meadow, red]
    assert search(store, tag="winter", project_id=project.id) == [red]
    assert search(store, tag="unused") == []


@pytest.mark.parametrize("filters, message", [
    (dict(status="done!"), r"`status` must be one of .* but is 'done!'"),
    (dict(status=()), r"`status` must be one of"),
    (dict(min_rating=6), r"`rating` must be 1..5 or None but is 6"),
    (dict(favourite="yes"), r"`favourite` must be True or False but is 'yes'"),
    (dict(since="2026-01-01"), r"`since` must be a datetime but is '2026-01-01'"),
    (dict(page=0), r"`page` must be an integer from 1 but is 0"),
    (dict(page_size=501), r"`page_size` must be an integer from 1 to 500 but is 501"),
    (dict(order="random"), r"`order` must be one of \('newest', 'oldest'\) but is 'random'"),
    (dict(tag=""), r"`tag` must be a text of 1..100 characters"),
    (dict(text=5), r"`text` must be a text"),
    (dict(project_id=-2), r"`project_id` must be a row id .* but is -2"),
])
def test_bad_filters_are_named_with_their_value(store, filters, message):
    with store.db.session() as session, pytest.raises(ValueError, match=message):
        list_generations(session, **filters)


def test_pages_are_disjoint_and_cover_everything(store, add_generation):
    ids = [add_generation(f"fox number {i}", created_at=at(1) + timedelta(minutes=i // 2)) for i in range(23)]
    with store.db.session() as session:
        pages = [list_generations(session, page=page, page_size=5) for page in range(1, 7)]
    assert [(p.total, p.pages, p.page, p.page_size) for p in pages[:2]] == [(23, 5, 1, 5), (23, 5, 2, 5)]
    assert [len(p.items) for p in pages] == [5, 5, 5, 5, 3, 0]
    listed = [generation.id for p in pages for generation in p.items]
    assert listed == sorted(ids, reverse=True)  # newest first; equal times by id
    with store.db.session() as session:
        empty = list_generations(session, text="elephant")
    assert (empty.items, empty.total, empty.pages) == ([], 0, 1)


def test_listed_items_carry_their_tags_after_the_session(store, foxes):
    with store.db.session() as session:
        add_tags(session, foxes[0], ["snow", "fox"])
        page = list_generations(session, tag="snow")
    assert sorted(tag.name for tag in page.items[0].tags) == ["fox", "snow"]  # loaded: no lazy load after close


def test_favourite_rating_and_note(store, foxes):
    whale = foxes[4]
    with store.db.session() as session:
        set_favourite(session, whale, True)
        set_rating(session, whale, 2)
        set_note(session, whale, "keep")
    with store.db.session() as session:
        generation = get_generation(session, whale)
        assert (generation.favourite, generation.rating, generation.note) == (True, 2, "keep")
        set_rating(session, whale, None)
        assert generation.rating is None
        for rating in (0, 6, 2.0, True, "3"):
            with pytest.raises(ValueError, match=rf"`rating` must be 1..5 or None but is {rating!r}"):
                set_rating(session, whale, rating)
        with pytest.raises(ValueError, match=r"`favourite` must be True or False but is 1"):
            set_favourite(session, whale, 1)
        with pytest.raises(ValueError, match=r"`generation_id` must be the id of an existing generation but is 999"):
            set_note(session, 999, "x")


def test_tags_are_normalised_counted_and_removed(store, foxes):
    red, foxes_meadow, owl, _, _ = foxes
    with store.db.session() as session:
        assert add_tags(session, red, ["  Fox", "fox", "SNOW"]) == ["fox", "snow"]
        assert add_tags(session, foxes_meadow, "FOX") == ["fox"]
        add_tags(session, owl, ["night", "fox"])
        trash_generation(session, owl)
        assert list_tags(session) == [TagCount("fox", 2), TagCount("snow", 1)]  # trash not counted
        assert remove_tags(session, red, ["fox", "never-added"]) == ["snow"]
        assert list_tags(session) == [TagCount("fox", 1), TagCount("snow", 1)]
    assert normalise_tag(" Golden Hour ") == "golden hour"
    for bad in ("", "   ", "x" * 101, None):
        with pytest.raises(ValueError, match=r"`tag` must be a text of 1..100 characters"):
            normalise_tag(bad)


def test_trash_hides_and_restore_brings_back(store, foxes):
    red = foxes[0]
    with store.db.session() as session:
        assert trash_generation(session, red).deleted_at is not None
    assert red not in search(store) and red not in search(store, text="fox")
    assert red in search(store, include_deleted=True)
    with store.db.session() as session:
        restore_generation(session, red)
    assert red in search(store, text="fox")


def test_remix_points_at_stored_inputs_and_keeps_the_seed_used(store, tmp_path):
    from PIL import Image

    from core.request import GenerationRequest, LoraSpec
    from core.store.jobs import enqueue_generation
    from core.store.loras import register_lora
    from core.store.remix import remix_request

    Image.new("RGB", (16, 16), "green").save(tmp_path / "start.png")
    (tmp_path / "style.safetensors").write_bytes(b"lora weights")
    request = GenerationRequest(prompt="a fox", model="random:tiny", image=str(tmp_path / "start.png"), steps=4,
                                loras=(LoraSpec(str(tmp_path / "style.safetensors"), 0.8),))
    generation_id = enqueue_generation(store, request)
    with store.db.session() as session:
        lora = register_lora(store, session, tmp_path / "style.safetensors", name="style")
        generation = get_generation(session, generation_id)
        generation.seed = 1234  # what a finished job records when its request asked for a random seed
        generation.result = {"loras": [{"path": str(tmp_path / "style.safetensors"), "sha256": lora.asset.sha256}]}
        stored_image, stored_lora = store.asset_path(generation.image), store.asset_path(lora.asset)
    (tmp_path / "start.png").unlink()
    (tmp_path / "style.safetensors").unlink()  # the originals are gone: the remix uses the store's copies

    with store.db.session() as session:
        again = remix_request(store, session, generation_id)
        changed = remix_request(store, session, generation_id, seed=7, prompt="a fox at dusk")
        with pytest.raises(ValueError, match=r"`overrides` must be request fields .* but include \['colour'\]"):
            remix_request(store, session, generation_id, colour="red")
    assert isinstance(again, GenerationRequest)
    assert (again.prompt, again.seed, again.steps, again.image) == ("a fox", 1234, 4, str(stored_image))
    assert again.loras == (LoraSpec(str(stored_lora), 0.8),)
    assert (changed.prompt, changed.seed, changed.image) == ("a fox at dusk", 7, str(stored_image))
