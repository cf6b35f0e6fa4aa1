"""Storyboard actions on a real StudioService (random tiny model, 2 steps, CPU): a native multi-shot pass split into
chosen takes, the cut, re-rendering one shot, the chained mode, and adding a generation from the Create tab."""

import numpy as np
import pytest
import torch
from PIL import Image

from app.service import StudioService
from app.storyboard_actions import (
    SEGMENT_TASK, add_generation_to_storyboard, choose_shot_take, cut_storyboard, find_storyboard, list_shot_takes,
    render_storyboard, rerender_shot, storyboard_view,
)
from core.conditioning import frames_to_video_tensor, video_tensor_to_frames
from core.models.vae import decode_latents, encode_video
from core.request import GenerationRequest
from core.store.generations import get_generation
from core.store.projects import create_project
from core.store.schema import Generation
from core.store.storyboards import add_shot, update_shot, update_storyboard
from core.video_io import read_video_frames, read_video_info, read_video_metadata, write_video

MODEL = "random:tiny"
STEPS = 2
FRAMES = (9, 5, 9)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    opened = StudioService.open(tmp_path_factory.mktemp("studio") / "data", device="cpu", model=MODEL)
    yield opened
    opened.close()


def new_storyboard(service, name: str, prompts, frames, *, subject="a paper kite", mode="native") -> int:
    project_id = service.store.db.write(lambda s: create_project(s, name).id)
    storyboard_id = find_storyboard(service, project_id, create=True)

    def fill(session):
        update_storyboard(session, storyboard_id, subject=subject, mode=mode)
        for prompt, count in zip(prompts, frames):
            add_shot(service.store, session, storyboard_id, prompt, count)

    service.store.db.write(fill)
    return storyboard_id


def chosen_paths(service, storyboard_id):
    return [shot.chosen.video_path for shot in storyboard_view(service, storyboard_id).shots]


@pytest.fixture(scope="module")
def native(service):
    """A rendered 3-shot native storyboard: (storyboard id, the run)."""
    storyboard_id = new_storyboard(service, "Native", ["it rises", "it spins", "it falls"], FRAMES)
    run = render_storyboard(service, storyboard_id, client_id="tests", seed=11, steps=STEPS)
    assert run.wait(300) and run.error == ""
    return storyboard_id, run


def test_native_pass_splits_into_chosen_takes_of_each_shot(service, native):
    storyboard_id, run = native
    whole_id, *segment_ids = run.job_ids
    view = storyboard_view(service, storyboard_id)
    assert [shot.chosen_id for shot in view.shots] == segment_ids and len(segment_ids) == 3
    whole, _ = read_video_frames(service.status(whole_id).video_path)
    assert len(whole) == sum(FRAMES)
    first = 0
    for shot, count in zip(view.shots, FRAMES):
        take = shot.chosen
        assert (take.status, take.task) == ("done", SEGMENT_TASK)
        assert [t.generation_id for t in shot.takes] == [take.generation_id]
        frames, _ = read_video_frames(take.video_path)
        assert len(frames) == count and read_video_info(take.video_path).num_frames == count
        # Its own part of the multi-shot video, re-encoded once more (H.264), so close rather than equal.
        assert psnr(frames, whole[first:first + count]) > 35
        first += count
        assert read_video_metadata(take.video_path)["segment"] == {"of": whole_id, "shot": shot.position,
                                                                   "first_frame": first - count, "num_frames": count}
    with service.store.db.read() as session:
        segment = get_generation(session, segment_ids[1])
        assert (segment.parent_id, segment.shot_id, segment.prompt) == (whole_id, view.shots[1].id,
                                                                         "a paper kite. it spins")


def test_cut_joins_the_chosen_takes_and_is_listed_in_history(service, native, tmp_path):
    storyboard_id, _ = native
    out = cut_storyboard(service, storyboard_id, tmp_path / "cut.mp4")
    frames, _ = read_video_frames(out)
    assert len(frames) == sum(FRAMES) and read_video_info(out).num_frames == sum(FRAMES)
    takes = np.concatenate([read_video_frames(path)[0] for path in chosen_paths(service, storyboard_id)])
    assert psnr(frames, takes) > 35
    with service.store.db.read() as session:
        cut = session.query(Generation).filter_by(task="cut").order_by(Generation.id.desc()).first()
        assert (cut.status, cut.request["total_frames"], cut.request["storyboard_id"]) == ("done", 23, storyboard_id)
        assert cut.project_id == storyboard_view(service, storyboard_id).project_id and cut.thumbnail is not None
        assert service.store.asset_path(cut.video).read_bytes() == out.read_bytes()


def test_trims_and_a_crossfade_shorten_the_cut(service, native, tmp_path):
    storyboard_id, _ = native
    shots = storyboard_view(service, storyboard_id).shots

    def edit(session, **changes):
        update_shot(session, shots[2].id, **changes)

    service.store.db.write(lambda s: edit(s, transition="crossfade", trim_start=1))
    try:
        out = cut_storyboard(service, storyboard_id, tmp_path / "faded.mp4", crossfade_frames=2)
        assert read_video_info(out).num_frames == 9 + 5 + (9 - 1) - 2
    finally:
        service.store.db.write(lambda s: edit(s, transition="cut", trim_start=0))


def test_rerendering_shot_2_leaves_shots_1_and_3_of_the_cut_as_they_were(service, native, tmp_path):
    """Shots 1 and 3 keep the same chosen takes (the very same files); the new cut re-encodes them beside a new
    shot 2, so their frames are compared at a PSNR only re-encoding could lower, while shot 2's differ."""
    storyboard_id, _ = native
    before_paths = chosen_paths(service, storyboard_id)
    old, _ = read_video_frames(cut_storyboard(service, storyboard_id, tmp_path / "old.mp4"))
    shot_2 = storyboard_view(service, storyboard_id).shots[1]
    run = rerender_shot(service, shot_2.id, client_id="tests", seed=99)
    assert run.wait(300) and run.error == ""
    after = storyboard_view(service, storyboard_id).shots
    new_take = after[1].chosen
    assert new_take.generation_id == run.job_ids[0] and len(after[1].takes) == 2
    assert read_video_info(new_take.video_path).num_frames == 5
    after_paths = [shot.chosen.video_path for shot in after]
    assert after_paths[0] == before_paths[0] and after_paths[2] == before_paths[2]
    new, _ = read_video_frames(cut_storyboard(service, storyboard_id, tmp_path / "new.mp4"))
    assert len(new) == len(old) == 23
    assert psnr(new[:9], old[:9]) > 40 and psnr(new[14:], old[14:]) > 40
    assert psnr(new[9:14], old[9:14]) < 30
    # It continued from shot 1's last frame and says so.
    with service.store.db.read() as session:
        take = get_generation(session, new_take.generation_id)
        assert take.parent_id == after[0].chosen_id and take.image is not None
    # Choosing the old take back restores the old cut.
    choose_shot_take(service, shot_2.id, shot_2.chosen_id)
    assert [t.generation_id for t in list_shot_takes(service, shot_2.id)] == [shot_2.chosen_id, run.job_ids[0]]
    again, _ = read_video_frames(cut_storyboard(service, storyboard_id, tmp_path / "again.mp4"))
    assert np.array_equal(again, old)


def test_chained_shot_starts_from_the_previous_shots_last_frame(service, tmp_path):
    storyboard_id = new_storyboard(service, "Chained", ["it rises", "it drifts"], (5, 5), mode="chained")
    run = render_storyboard(service, storyboard_id, client_id="tests", seed=5, steps=STEPS)
    assert run.wait(300) and run.error == ""
    first, second = storyboard_view(service, storyboard_id).shots
    assert [first.chosen_id, second.chosen_id] == run.job_ids
    shot_1, _ = read_video_frames(first.chosen.video_path)
    shot_2, _ = read_video_frames(second.chosen.video_path)
    with service.store.db.read() as session:
        take = get_generation(session, second.chosen_id)
        assert take.parent_id == first.chosen_id and take.task == "image_to_video"
        given = np.asarray(Image.open(service.store.asset_path(take.image)).convert("RGB"))
    assert np.array_equal(given, shot_1[-1])  # the image it was given is shot 1's last frame, exactly
    # The untrained VAE does not reproduce an image, so shot 2's first frame is compared with that image through the
    # VAE, written to an mp4 too (H.264 at this size costs ~7 dB on its own); shot 1's first frame is the control.
    engine = service.engine
    vae = engine.model(engine.validate(GenerationRequest(prompt="-", model=MODEL)).model).vae
    with torch.inference_mode():
        decoded = decode_latents(vae, encode_video(vae, frames_to_video_tensor(given[None])))
    through_vae = video_tensor_to_frames(decoded[0])
    expected, _ = read_video_frames(write_video(np.repeat(through_vae, 5, axis=0), tmp_path / "expected.mp4", 8.0))
    assert psnr(shot_2[0], expected[0]) > 33  # 36 dB measured with the per-frame GroupNorm VAE
    assert psnr(shot_2[0], expected[0]) > psnr(shot_1[0], expected[0]) + 8


def test_add_generation_makes_a_shot_whose_chosen_take_it_is(service):
    job = service.submit(GenerationRequest(prompt="a lighthouse at dusk", model=MODEL, num_frames=5, steps=STEPS,
                                           seed=1), client_id="tests")
    assert service.wait(job, 120).status == "done"
    message = add_generation_to_storyboard(service, None, job)
    assert message == ("Added as shot 1 of “Storyboard” in project “My storyboard” "
                       "(a new project, as none was picked).")
    storyboard_id = find_storyboard(service, None)
    (shot,) = storyboard_view(service, storyboard_id).shots
    assert (shot.prompt, shot.num_frames, shot.chosen_id) == ("a lighthouse at dusk", 5, job)
    with pytest.raises(ValueError, match=f"`generation_id` {job} is already a take of shot {shot.id}"):
        add_generation_to_storyboard(service, None, job)
    other = service.submit(GenerationRequest(prompt="waves", model=MODEL, num_frames=5, steps=STEPS, seed=2))
    service.wait(other, 120)
    second = add_generation_to_storyboard(service, None, other)
    assert second == "Added as shot 2 of “Storyboard” in project “My storyboard”."


def test_mistakes_are_named_before_anything_is_queued(service):
    storyboard_id = new_storyboard(service, "Mistakes", ["it rises", "  "], (5, 5))
    with pytest.raises(ValueError, match="Shot 2: `prompt` must say what happens in the shot but is '  '"):
        render_storyboard(service, storyboard_id, client_id="tests")
    with pytest.raises(ValueError, match="Shot 1 has no finished chosen take; generate it first"):
        cut_storyboard(service, storyboard_id)
    empty = find_storyboard(service, service.store.db.write(lambda s: create_project(s, "Empty").id), create=True)
    with pytest.raises(ValueError, match=f"`storyboard_id` {empty} has no shots to generate"):
        render_storyboard(service, empty, client_id="tests")
