"""The page of `speedy serve` in headless Chromium, over three voices with different controls (the
tiny Sambert and a relabelled copy of it, each with the tiny HiFi-GAN, and Piper's joe alone):
each side's own controls, both sides playing, errors in the page's words, the API key, and the
blind A/B mode."""

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from speedy.artifact import Artifact
from tests.conftest import republish
from tests.serve_client import CHROMIUM_FLAGS, ServerProcess, play, spawn

pytest.importorskip("pypinyin", reason="Chinese text needs the [text] extra (pypinyin)")
pytest.importorskip("uvicorn", reason="serving needs the [serve] extra (starlette, uvicorn)")
pytest.importorskip("playwright.sync_api", reason="the page is driven by the [dev] extra")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (make test installs it where apt-get can)"
)
TEXT = "Hello, world. The quick brown fox."
ALT_EMOTIONS = ["calm", "cheerful", "gloomy", "cross", "amazed"]
SAMBERT, ALT, JOE = "sambert+hifi", "alt+hifi", "joe"
KEY = "sesame"
BUTTONS = ["play-a", "play-b", "play-ab"]


@pytest.fixture(scope="module")
def joe(piper_import: Artifact) -> Path:
    """Piper's en_US-joe-medium imported as a text-to-wave voice (tests/conftest.py)."""
    return piper_import.path


@pytest.fixture(scope="module")
def alt(sambert_build: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Sambert with other emotion labels and two speakers: a voice of the same family
    whose choices differ."""
    source: Artifact = sambert_build["simplify"]
    copy = Path(shutil.copytree(source.path, tmp_path_factory.mktemp("alt") / "alt"))
    spec = source.manifest.model
    settings = {**spec.task_settings, "emotions": ALT_EMOTIONS, "n_speakers": 2}
    model = spec.model_copy(update={"task_settings": settings})
    republish(copy, source.manifest.model_copy(update={"model": model}))
    return copy


@pytest.fixture(scope="module")
def server(sambert_build, tiny_build, joe, alt) -> Iterator[ServerProcess]:
    with spawn([
        f"sambert={sambert_build['simplify'].path}", f"alt={alt}",
        f"hifi={tiny_build['simplify'].path}", f"joe={joe}",
        "--workers", "1", "--max-chars", "200", "--api-key", KEY,
    ]) as served:  # fmt: skip
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (a tab for each test)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, server: ServerProcess) -> Iterator[Any]:
    """A fresh tab on the page, its API key given, the voices listed."""
    tab = browser.new_page(viewport={"width": 1000, "height": 900})
    try:
        tab.add_init_script(f"sessionStorage.setItem('speedy-api-key', '{KEY}')")
        tab.goto(url(server))
        tab.wait_for_selector("#voice-b option", state="attached")
        yield tab
    finally:
        tab.close()


def url(server: ServerProcess) -> str:
    return f"http://{server.host}:{server.port}/"


def choose(page: Any, side: str, voice: str) -> None:
    page.select_option(f"#voice-{side}", voice)


def controls(page: Any, side: str) -> list[str]:
    return page.eval_on_selector_all(
        f"#controls-{side} [data-control]", "els => els.map(e => e.dataset.control)"
    )


def options(page: Any, selector: str) -> list[str]:
    return page.eval_on_selector_all(f"{selector} option", "els => els.map(e => e.value)")


def record_buttons_at_fetch(page: Any) -> None:
    """Keep the play buttons' disabled flags as each request leaves (window.seen)."""
    page.evaluate(
        """ids => { window.seen = []; const send = window.fetch;
        window.fetch = (...args) => {
          window.seen.push(ids.map(id => document.getElementById(id).disabled));
          return send(...args); }; }""",
        BUTTONS,
    )


def shown_error(page: Any, side: str) -> str:
    page.wait_for_function(f"document.getElementById('timing-{side}').dataset.state === 'error'")
    return page.inner_text(f"#timing-{side}")


def enabled(page: Any, ids: list[str]) -> bool:
    return page.evaluate("ids => ids.every(id => !document.getElementById(id).disabled)", ids)


def test_each_side_has_its_voices_controls_and_both_play(page, server, tmp_path) -> None:
    """Sambert on A (emotion, pitch shift), Piper on B (noise scales); both play with their
    timings, the buttons off while they synthesize; the artifacts in use are marked."""
    assert options(page, "#voice-a") == [SAMBERT, ALT, JOE]
    choose(page, "b", JOE)
    assert controls(page, "a") == ["speaker", "emotion", "speed", "pitch_shift"]
    assert controls(page, "b") == ["speaker", "speed", "noise_scale", "noise_w"]
    assert options(page, "#control-a-emotion")[:2] == ["neutral", "happy"]
    assert options(page, "#control-b-speaker") == ["0"]
    speed = page.eval_on_selector("#control-a-speed", "e => [e.min, e.max, e.value]")
    assert speed == ["0.25", "4", "1"]  # the request schema's range
    assert page.get_attribute("#control-b-noise_w", "max") == "2"
    assert "0.25 to 4" in page.inner_text("#controls-a")
    choose(page, "b", ALT)  # the same family, other choices
    assert controls(page, "b") == controls(page, "a")
    assert options(page, "#control-b-emotion") == ALT_EMOTIONS
    assert options(page, "#control-b-speaker") == ["0", "1"]
    choose(page, "b", JOE)
    marked = "rows => rows.map(row => row.cells[0].textContent)"
    assert page.eval_on_selector_all("tr.in-a", marked) == ["sambert", "hifi"]
    assert page.inner_text("tr.in-b td:first-child") == JOE

    page.fill("#text", TEXT)
    page.select_option("#control-a-emotion", "happy")
    page.fill("#control-b-noise_w", "0")
    record_buttons_at_fetch(page)
    timings = [play(page, side) for side in "ab"]
    shown = r"s of audio in \d+ ms \(RTF [\d.]+\); round trip \d+ ms"
    assert all(re.search(shown, t) for t in timings), timings
    duration = page.evaluate("document.getElementById('audio-b').duration")
    assert duration == pytest.approx(float(timings[1].split(" s of audio")[0]), abs=0.02)
    assert page.evaluate("window.seen") == [[True] * 3] * 2  # off while synthesizing
    assert enabled(page, BUTTONS)
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_errors_are_in_the_pages_words(page, server) -> None:
    """A control out of range: the problem and the page's hint (never the server's command-line
    fix), that side's old audio gone, the buttons back on; then 503, and a server gone."""
    choose(page, "b", JOE)
    page.fill("#text", TEXT)
    play(page, "b")
    assert page.get_attribute("#audio-b", "src")
    page.fill("#control-b-speed", "9")
    page.click("#play-b")
    shown = shown_error(page, "b")
    body = {"voice": JOE, "text": TEXT, "speaker": 0, "speed": 9}
    direct = server.call("POST", "/v1/tts", body, {"Authorization": f"Bearer {KEY}"})
    assert direct.status == 422
    problem, fix = direct.json()["error"], direct.json()["fix"]
    assert shown.startswith(f"422: {problem}") and problem.startswith("speed:")
    assert "Change speed (0.25 to 4) and play again." in shown
    assert fix not in shown and "--" not in shown
    assert page.get_attribute("#audio-b", "src") is None  # no stale audio under a new error
    assert page.get_attribute("#timing-b", "data-rtf") is None
    assert "invalid" in page.get_attribute("#control-b-speed", "class")
    assert enabled(page, BUTTONS)

    busy = {"error": "the server is busy: retry in 7 s", "fix": "retry later"}
    page.route("**/v1/tts", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "7"}, json=busy,
    ))  # fmt: skip
    page.click("#play-a")
    shown = shown_error(page, "a")
    assert "The server is busy: play again in 7 s." in shown and "retry later" not in shown
    page.unroute("**/v1/tts")
    page.route("**/v1/tts", lambda route: route.abort())
    page.click("#play-a")
    assert "could not be reached" in shown_error(page, "a")
    assert enabled(page, BUTTONS)


def test_the_api_key_is_asked_for_and_sent(browser, server) -> None:
    """The server answers 401 without its key: the page asks for it (a password field), keeps
    it for the session and sends it with every request, and asks again when it is refused."""
    tab = browser.new_page()
    try:
        tab.goto(url(server))
        tab.wait_for_selector("#api-key", state="visible")
        assert tab.get_attribute("#api-key", "type") == "password"
        assert "needs an API key" in tab.inner_text("#status")
        tab.fill("#api-key", "wrong")
        tab.press("#api-key", "Enter")
        tab.wait_for_function("document.getElementById('status').textContent.includes('not')")
        assert "This key was not accepted" in tab.inner_text("#status")
        tab.fill("#api-key", KEY)
        tab.press("#api-key", "Enter")
        tab.wait_for_selector("#voice-b option", state="attached")
        assert tab.evaluate("sessionStorage.getItem('speedy-api-key')") == KEY
        assert tab.is_hidden("#api-key")
        tab.fill("#text", TEXT)
        play(tab, "a")  # /v1/models and /v1/tts both carried the key
        tab.evaluate("sessionStorage.setItem('speedy-api-key', 'stale')")
        tab.click("#play-b")
        shown = shown_error(tab, "b")
        assert shown.startswith("401: ") and "enter it above" in shown
        assert "Authorization" not in tab.inner_text("body")  # the server's fix is not shown
        assert tab.is_visible("#api-key")
    finally:
        tab.close()


def test_blind_ab_hides_the_voices_until_the_pick(page, server) -> None:
    choose(page, "b", JOE)
    page.fill("#text", TEXT)
    page.check("#blind")
    for hidden in ["#voice-a", "#voice-b", "#controls-a", "#timing-a", "#play-a", "#play-ab"]:
        assert page.is_hidden(hidden), hidden
    assert page.eval_on_selector_all("tr.in-a, tr.in-b", "rows => rows.length") == 0
    sighted = page.inner_text("#status") + page.inner_text("#blind-panel")
    assert SAMBERT not in sighted and JOE not in sighted
    picks = ["#pick-x", "#pick-y", "#pick-same"]
    assert all(page.is_disabled(p) for p in picks)  # not before both are heard

    picked = []
    for pick, plays in [("#pick-x", ["#play-xy"]), ("#pick-same", ["#play-y", "#play-x"])]:
        for button in plays:
            page.click(button)
        page.wait_for_function("!document.getElementById('pick-x').disabled")
        assert page.inner_text("#timing-x") == page.inner_text("#timing-y") == "ready"
        assert page.inner_text("#reveal") == ""
        page.click(pick)
        x, y = page.get_attribute("#reveal", "data-x"), page.get_attribute("#reveal", "data-y")
        assert {x, y} == {SAMBERT, JOE}
        assert f"X was {x}" in page.inner_text("#reveal")
        assert f"Y was {y}" in page.inner_text("#reveal")
        picked.append(x if pick == "#pick-x" else None)
        assert all(page.is_disabled(p) for p in picks)
        page.click("#blind-next")
    tally = page.inner_text("#tally")
    assert f"{picked[0]}: 1" in tally and "no difference: 1" in tally, tally
    page.uncheck("#blind")
    assert page.is_visible("#voice-a") and page.inner_text("tr.in-b td:first-child") == JOE
