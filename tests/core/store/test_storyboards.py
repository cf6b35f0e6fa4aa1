"""Storyboards and shots on a real SQLite file: positions stay 0..n-1 through every change; takes and the chosen one."""

import pytest
from PIL import Image
from sqlalchemy import select

from core.store.generations import trash_generation
from core.store.projects import create_project
from core.store.schema import Generation, Shot
from core.store.storyboards import (add_shot, create_storyboard, delete_shot, duplicate_shot, get_shot,
                                    get_storyboard, list_storyboards, move_shot, reorder_shots, set_shot_reference,
                                    update_shot, update_storyboard)
from core.store.takes import choose_take, list_takes, record_take


@pytest.fixture
def board(store):
    """A storyboard with shots "a", "b", "c"; returns (storyboard id, shot ids)."""
    with store.db.session() as session:
        project = create_project(session, "film")
        storyboard = create_storyboard(session, project.id, "opening", subject="a red fox", mode="chained",
                                       settings={"width": 256, "steps": 20})
        shot_ids = [add_shot(store, session, storyboard.id, prompt, 5).id for prompt in "abc"]
        return storyboard.id, shot_ids


def order(store, storyboard_id):
    """[(position, prompt), ...] as stored."""
    with store.db.session() as session:
        query = select(Shot.position, Shot.prompt).where(Shot.storyboard_id == storyboard_id).order_by(Shot.position)
        return [tuple(row) for row in session.execute(query)]


def test_create_and_update_storyboard(store, board):
    storyboard_id, _ = board
    with store.db.session() as session:
        storyboard = get_storyboard(session, storyboard_id)
        assert (storyboard.name, storyboard.subject, storyboard.mode) == ("opening", "a red fox", "chained")
        assert storyboard.settings == {"width": 256, "steps": 20}
        assert [board.id for board in list_storyboards(session, storyboard.project_id)] == [storyboard_id]
        settings = storyboard.settings
        settings["steps"] = 30  # changed in place, then saved: must still be written
        update_storyboard(session, storyboard_id, name="Opening", mode="native", settings=settings)
    with store.db.session() as session:
        storyboard = get_storyboard(session, storyboard_id)
        assert (storyboard.name, storyboard.mode, storyboard.settings["steps"]) == ("Opening", "native", 30)


@pytest.mark.parametrize("fields, message", [
    (dict(mode="parallel"), r"`mode` must be one of \('native', 'chained'\) but is 'parallel'"),
    (dict(settings=[1, 2]), r"`settings` must be a dict with text keys but is \[1, 2\]"),
    (dict(settings={"x": float("nan")}), r"`settings` must be JSON"),
])
def test_bad_storyboard_fields_are_named(store, fields, message):
    with store.db.session() as session:
        project = create_project(session, "film")
        with pytest.raises(ValueError, match=message):
            create_storyboard(session, project.id, "board", **fields)


def test_add_shot_at_a_position_and_at_the_end(store, board):
    storyboard_id, _ = board
    assert order(store, storyboard_id) == [(0, "a"), (1, "b"), (2, "c")]
    with store.db.session() as session:
        add_shot(store, session, storyboard_id, "first", 9, position=0)
        add_shot(store, session, storyboard_id, "last", 1)
    assert order(store, storyboard_id) == [(0, "first"), (1, "a"), (2, "b"), (3, "c"), (4, "last")]


@pytest.mark.parametrize("frames", [0, 2, 6, 8, -3, 5.0, True, "5"])
def test_shot_frames_must_be_1_plus_4k(store, board, frames):
    storyboard_id, shot_ids = board
    with store.db.session() as session:
        with pytest.raises(ValueError, match=r"`num_frames` must be 1 \+ 4k .* but is"):
            add_shot(store, session, storyboard_id, "x", frames)
        with pytest.raises(ValueError, match=r"`num_frames` must be 1 \+ 4k"):
            update_shot(session, shot_ids[0], num_frames=frames)


@pytest.mark.parametrize("position", [-1, 4, 1.5, None])
def test_positions_out_of_range_are_refused(store, board, position):
    storyboard_id, shot_ids = board
    with store.db.session() as session:
        if position is not None:
            with pytest.raises(ValueError, match=r"`position` must be an integer from 0 to 3 but is"):
                add_shot(store, session, storyboard_id, "x", 5, position=position)
        with pytest.raises(ValueError, match=r"`position` must be an integer from 0 to 2 but is"):
            move_shot(session, shot_ids[0], position if position is not None else 3)


def test_move_shot_keeps_positions_contiguous(store, board):
    storyboard_id, (a, b, c) = board
    with store.db.session() as session:
        assert [shot.prompt for shot in move_shot(session, a, 2)] == ["b", "c", "a"]
    assert order(store, storyboard_id) == [(0, "b"), (1, "c"), (2, "a")]
    with store.db.session() as session:
        move_shot(session, a, 0)
        assert [shot.prompt for shot in get_storyboard(session, storyboard_id).shots] == ["a", "b", "c"]
    assert order(store, storyboard_id) == [(0, "a"), (1, "b"), (2, "c")]


def test_reorder_shots_needs_each_shot_once(store, board):
    storyboard_id, (a, b, c) = board
    with store.db.session() as session:
        reorder_shots(session, storyboard_id, [c, a, b])
    assert order(store, storyboard_id) == [(0, "c"), (1, "a"), (2, "b")]
    with store.db.session() as session:
        for bad in ([a, b], [a, b, b], [a, b, c, 99], "abc", [a, b, "c"]):
            with pytest.raises(ValueError, match=r"`shot_ids` must list each shot of storyboard"):
                reorder_shots(session, storyboard_id, bad)


def test_duplicate_goes_right_after_the_original(store, board, tmp_path):
    storyboard_id, (a, b, c) = board
    Image.new("RGB", (8, 8), "red").save(tmp_path / "ref.png")
    with store.db.session() as session:
        set_shot_reference(store, session, b, tmp_path / "ref.png")
        update_shot(session, b, prompt="b wide", num_frames=13, transition="crossfade", trim_start=2, trim_end=1)
        copy = duplicate_shot(session, b)
        assert copy.id != b
        assert (copy.prompt, copy.num_frames, copy.transition, copy.trim_start, copy.trim_end) == \
            ("b wide", 13, "crossfade", 2, 1)
        assert copy.reference_asset_id == get_shot(session, b).reference_asset_id is not None
    assert order(store, storyboard_id) == [(0, "a"), (1, "b wide"), (2, "b wide"), (3, "c")]


def test_delete_shot_renumbers_and_keeps_its_takes_in_history(store, board, add_generation):
    storyboard_id, (a, b, c) = board
    take = add_generation("take of b", shot_id=b)
    with store.db.session() as session:
        delete_shot(session, b)
    assert order(store, storyboard_id) == [(0, "a"), (1, "c")]
    with store.db.session() as session:
        assert session.get(Generation, take).shot_id is None
        with pytest.raises(ValueError, match=r"`shot_id` must be the id of an existing shot but is"):
            get_shot(session, b)


def test_reference_image_is_stored_and_must_be_an_image(store, board, tmp_path):
    storyboard_id, _ = board
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "ref.png")
    (tmp_path / "notes.png").write_text("not an image")
    with store.db.session() as session:
        shot = add_shot(store, session, storyboard_id, "with reference", 5, reference_image=tmp_path / "ref.png")
        stored = store.asset_path(shot.reference)
        assert stored.is_file() and stored.read_bytes() == (tmp_path / "ref.png").read_bytes()
        assert shot.reference.kind == "image"
        with pytest.raises(ValueError, match=r"`reference_image` must be a readable image file but is '.*notes.png'"):
            add_shot(store, session, storyboard_id, "bad", 5, reference_image=tmp_path / "notes.png")
        set_shot_reference(store, session, shot.id, None)
        assert shot.reference is None


@pytest.mark.parametrize("fields, message", [
    (dict(transition="wipe"), r"`transition` must be one of \('cut', 'crossfade'\) but is 'wipe'"),
    (dict(trim_start=-1), r"`trim_start` must be a whole number of frames from 0 but is -1"),
    (dict(trim_start=3, trim_end=2), r"`trim_start` \+ `trim_end` must leave at least one of the shot's 5 frames"),
])
def test_bad_shot_updates_change_nothing(store, board, fields, message):
    _, (a, _, _) = board
    with store.db.session() as session:
        with pytest.raises(ValueError, match=message):
            update_shot(session, a, prompt="changed?", **fields)
        shot = get_shot(session, a)
        assert (shot.prompt, shot.transition, shot.trim_start, shot.trim_end) == ("a", "cut", 0, 0)


def test_takes_are_listed_and_one_is_chosen(store, board, add_generation):
    _, (a, b, _) = board
    first, second = add_generation("take 1", shot_id=a), add_generation("take 2")
    other = add_generation("take of b", shot_id=b)
    with store.db.session() as session:
        record_take(session, a, second)
        assert [take.id for take in list_takes(session, a)] == [first, second]
        assert choose_take(session, a, second).chosen_generation_id == second
        with pytest.raises(ValueError, match=rf"`generation_id` must be a take of shot {a} but is {other} "
                                             rf"\(a take of shot {b}\)"):
            choose_take(session, a, other)
        trash_generation(session, first)
        assert [take.id for take in list_takes(session, a)] == [second]
        assert len(list_takes(session, a, include_deleted=True)) == 2
    with store.db.session() as session:
        assert get_shot(session, a).chosen.id == second
        choose_take(session, a, None)
    with store.db.session() as session:
        assert get_shot(session, a).chosen_generation_id is None
