"""The Storyboard tab in a real browser: build three shots, generate them, cut, play the cut, re-render shot 2 and
cut again (studio on the random tiny model, 8 fps)."""

import pytest

from tests.app.conftest import screenshot

pytestmark = pytest.mark.slow

FPS = 8.0
FRAMES = (9, 5, 9)  # shot 2's length is typed into the page; new shots are 9 frames
TRIM_END = 2  # on shot 3, typed into the page too


def wait_for_progress(page, text: str, timeout: float = 240_000) -> None:
    page.locator("#storyboard-progress").get_by_text(text).wait_for(timeout=timeout)


def playable_video(page, selector: str, timeout: float = 60_000) -> dict:
    """Wait until the browser can play the video (readyState >= 2); its src, readyState and duration."""
    page.wait_for_function(
        f"() => {{ const v = document.querySelector('{selector} video'); return v && v.readyState >= 2 "
        f"&& v.duration > 0; }}", timeout=timeout)
    return page.evaluate(f"() => {{ const v = document.querySelector('{selector} video'); "
                         f"return {{src: v.currentSrc, readyState: v.readyState, duration: v.duration}}; }}")


def open_storyboard_tab(page) -> None:
    """Open the tab and wait for the redraw that opening it starts, so that no click lands on a vanishing button."""
    drawn = "document.querySelector('#storyboard-drawn')"
    # Not drawn yet (a fresh page mounts the tab on first open): its version state is still 0.
    before = page.evaluate(f"() => {drawn} ? Number({drawn}.dataset.version) : 0")
    page.get_by_role("tab", name="Storyboard").click()
    page.wait_for_function(f"(before) => {drawn} && Number({drawn}.dataset.version) > before", arg=before)


def test_build_generate_cut_rerender_and_recut(page):
    open_storyboard_tab(page)
    for number in (1, 2, 3):
        page.locator("#storyboard-add").click()
        page.locator(f"#shot-{number}-prompt textarea").wait_for()
    page.locator("#storyboard-subject textarea").fill("a red paper kite over a beach")
    for number, prompt in enumerate(["it rises into the wind", "it loops twice", "it lands on the sand"], 1):
        page.locator(f"#shot-{number}-prompt textarea").fill(prompt)
    page.locator("#shot-2-frames input[type=number]").fill(str(FRAMES[1]))
    page.locator("#shot-2-frames input[type=number]").blur()
    page.locator("#shot-3-trim-end input").fill(str(TRIM_END))

    page.locator("#storyboard-generate").click()
    wait_for_progress(page, "Done: the new takes are chosen.")
    for number in (1, 2, 3):
        playable_video(page, f"#shot-{number}-player")
        assert page.locator(f"#shot-{number}-takes label").count() == 1
    assert page.locator("#shot-3-prompt textarea").input_value() == "it lands on the sand"
    assert page.locator("#shot-3-trim-end input").input_value() == str(TRIM_END)
    assert page.locator("#shot-2-frames input[type=number]").input_value() == str(FRAMES[1])

    page.locator("#storyboard-cut-button").click()
    wait_for_progress(page, f"Cut 3 shots into one video of {sum(FRAMES) - TRIM_END} frames")
    first_cut = playable_video(page, "#storyboard-cut")
    total = sum(FRAMES) - TRIM_END
    assert first_cut["duration"] == pytest.approx(total / FPS, abs=0.5 / FPS)
    assert page.get_by_role("button", name="Download the cut").is_visible()

    page.locator("#shot-2-rerender").click()
    wait_for_progress(page, "Re-render: ")
    wait_for_progress(page, "Done: the new takes are chosen.")
    page.locator("#shot-2-takes label").nth(1).wait_for()
    assert page.locator("#shot-2-takes label").count() == 2 and page.locator("#shot-1-takes label").count() == 1
    assert page.locator("#shot-2-takes input").nth(1).is_checked()  # the new take is the chosen one

    page.locator("#storyboard-cut-button").click()
    page.wait_for_function(
        "(old) => { const v = document.querySelector('#storyboard-cut video'); return v && v.currentSrc !== old; }",
        arg=first_cut["src"], timeout=60_000)
    second_cut = playable_video(page, "#storyboard-cut")
    assert second_cut["duration"] == pytest.approx(total / FPS, abs=0.5 / FPS)
    page.locator("#shot-1-player video").scroll_into_view_if_needed()
    screenshot(page, "storyboard")


def players_by_prompt(page) -> dict:
    """Each shot's prompt and the video its player shows (None: no take yet), in order."""
    return page.evaluate("""() => [...document.querySelectorAll('[id^=shot-][id$=-prompt] textarea')].map(p => {
        const number = p.closest('[id$=-prompt]').id.split('-')[1];
        const video = document.querySelector(`#shot-${number}-player video`);
        return [p.value, video ? video.currentSrc : null]; })""")


def test_moving_and_deleting_shots_keeps_each_its_own_take(page):
    """Runs on the storyboard the test above left: shots drawn again in new places keep their own players."""
    open_storyboard_tab(page)
    page.locator("#shot-3-prompt textarea").wait_for()
    before = dict(players_by_prompt(page))
    page.locator("#storyboard-add").click()
    page.locator("#shot-4-prompt textarea").fill("a gull watches")
    page.locator("#shot-4").get_by_role("button", name="↑ Up").click()
    page.wait_for_function("() => document.querySelector('#shot-3-prompt textarea')?.value === 'a gull watches'")
    page.locator("#shot-1").get_by_role("button", name="Delete").click()
    page.wait_for_function("() => document.querySelector('#shot-1-prompt textarea')?.value === 'it loops twice'")
    shots = players_by_prompt(page)
    assert [prompt for prompt, _ in shots] == ["it loops twice", "a gull watches", "it lands on the sand"]
    assert shots[1][1] is None  # the new shot has no take, though a shot with one was drawn there before
    assert shots[0][1] == before["it loops twice"] and shots[2][1] == before["it lands on the sand"]
