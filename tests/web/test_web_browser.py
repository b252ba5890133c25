"""The web page in a real headless Chromium, on a real tritonserver: upload, pick, wait, watch, check."""

from __future__ import annotations

import io
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bodydance_client.templates import Template, load_bundled, save_template
from bodydance_client.video import read_video

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
ASTRONAUT = ROOT / "client" / "bodydance_client" / "data" / "astronaut.jpg"
SHORTEST_DANCE = "jumping_jacks"  # 150 frames, the shortest bundled dance


class Page:
    """The Gradio page as a user sees it; everything is read through JavaScript (Gradio re-renders often)."""

    def __init__(self, driver, url: str):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.url = driver, url
        driver.get(url + "/")
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return !!document.querySelector('#photo input[type=file]')"))

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def upload_photo(self, path: Path) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, "#photo input[type=file]").send_keys(str(path))
        self.wait(lambda: self.js("return !!document.querySelector('#photo img')"), 60, "the photo's preview")

    def upload_own_dance(self, path: Path) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, "#own input[type=file]").send_keys(str(path))
        self.wait(lambda: path.stem in self.js("return document.getElementById('own').innerText")
                  and self.picked() == "my own (upload below)", 60, "the dance file to be listed and picked")

    def pick(self, dance: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.XPATH, f"//*[@id='dance']//label[.//input[@value='{dance}']]").click()
        assert self.picked() == dance

    def picked(self) -> str:
        return self.js("const i = document.querySelector('#dance input:checked'); return i ? i.value : null")

    def press_dance(self) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.ID, "dance-button").click()

    def status(self) -> str:
        return self.js("const s = document.getElementById('status'); return s ? s.innerText.trim() : ''")

    def video(self):
        return self.js("""const v = document.querySelector('#result video');
            return v ? {src: v.currentSrc, ready: v.readyState, duration: v.duration, time: v.currentTime,
                        paused: v.paused, error: v.error ? v.error.code : null, width: v.videoWidth} : null""")

    def progress_texts(self):
        return self.js("return Array.from(document.querySelectorAll('.progress-text, .meta-text, .meta-text-center'))"
                       ".map(e => e.innerText.trim()).filter(t => t)")

    def wait(self, condition, timeout_s: float, what: str):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; status: {self.status()!r}")

    def wait_for_outcome(self, timeout_s: float = 300):
        """Until the video is playable or the status says why not; the progress texts seen meanwhile."""
        seen = []

        def done():
            seen.extend(t for t in self.progress_texts() if t not in seen)
            video = self.video()
            return self.status().startswith("The video was not made") or (
                video and video["src"] and video["ready"] >= 3 and self.status().startswith("Done"))

        self.wait(done, timeout_s, "the video or a message")
        return seen

    def resources(self):
        return self.js("return performance.getEntriesByType('resource').map(e => e.name)")


def _fetch(url: str, path: Path) -> Path:
    with urllib.request.urlopen(url, timeout=60) as response:
        path.write_bytes(response.read())
    return path


def test_a_photo_becomes_a_dance_in_the_browser(web_app, browser, tmp_path, screenshot_copy):
    url, studio = web_app
    page = Page(browser, url)
    started = time.perf_counter()
    page.upload_photo(ASTRONAUT)
    page.pick(SHORTEST_DANCE)
    page.press_dance()
    progress = page.wait_for_outcome()
    seconds = time.perf_counter() - started
    template = load_bundled(SHORTEST_DANCE)
    status = page.status()
    assert status.startswith(f"Done: {template.num_frames} frames of {SHORTEST_DANCE}"), status
    print(f"\nupload to playable video: {seconds:.1f} s ({template.num_frames} frames at 256, "
          f"page says: {status})")
    # progress was shown while the frames were made
    assert any("frames" in text for text in progress), progress

    # the page's video element plays the file, and that file has the template's frames
    video = page.video()
    assert video["error"] is None and video["width"] > 0
    assert video["duration"] == pytest.approx(template.duration_s, abs=0.1)
    page.js("document.querySelector('#result video').play()")
    first = page.video()["time"]
    page.wait(lambda: page.video()["time"] > first + 0.3 or page.video()["time"] < first, 20, "the video to play")
    assert f"file={studio.root}" in video["src"]  # served from Gradio's cache inside the studio's folder
    assert list(studio.root.rglob("astronaut*.jpg"))  # and the upload went there too
    frames, fps, codec = read_video(_fetch(video["src"], tmp_path / "served.mp4"))
    assert len(frames) == template.num_frames and codec == "h264" and fps == pytest.approx(template.fps)

    # the contact sheet and the download button are there
    sheet = page.js("const i = document.querySelector('#sheet img'); return i ? [i.naturalWidth, i.src] : null")
    assert sheet and sheet[0] > 0
    assert page.js("return !!document.querySelector('#result button[aria-label*=ownload], #result a[download]')")

    # nothing came from anywhere but the app itself
    outside = [r for r in page.resources() if not r.startswith(url) and not r.startswith("data:")
               and not r.startswith("blob:")]
    assert not outside, outside

    shot = tmp_path / "web.png"
    page.js("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] > 0
    screenshot_copy(shot)

    # the job's own folder goes once the page has its copy
    page.wait(lambda: not list(studio.root.glob("job-*")), 20, "the job folder to be removed")


def test_a_photo_without_a_person_gets_a_plain_message(web_app, browser, tmp_path):
    url, _ = web_app
    ramp = np.linspace(40, 220, 320, dtype=np.uint8)
    empty = np.stack([np.tile(ramp, (240, 1))] * 3, axis=-1)  # a grey ramp: a picture, nobody in it
    path = tmp_path / "nobody.png"
    Image.fromarray(empty).save(path)
    page = Page(browser, url)
    page.upload_photo(path)
    page.press_dance()
    page.wait_for_outcome(120)
    status = page.status()
    assert status.startswith("The video was not made. No person was found in this photo."), status
    body = page.js("return document.body.innerText")
    assert "Traceback" not in body and "NoPersonError" not in body and "[no_person]" not in body
    assert not (page.video() or {}).get("src")


def _template_slice(name: str, frames: int, new_name: str) -> Template:
    full = load_bundled(name)
    return Template(new_name, full.fps, full.poses[:frames], full.translations[:frames])


def test_two_users_at_once_each_get_their_own_video(web_app, make_browser, tmp_path):
    """Two browsers, each with its own short dance (a template .npz uploaded as 'my own'), pressed together."""
    url, _ = web_app
    dances = [_template_slice("disco", 24, "short_disco"), _template_slice("wave", 36, "short_wave")]
    pages = [Page(make_browser(), url) for _ in dances]
    mirrored = tmp_path / "mirrored.png"
    Image.open(ASTRONAUT).transpose(Image.FLIP_LEFT_RIGHT).save(mirrored)
    for page, template, photo in zip(pages, dances, (ASTRONAUT, mirrored)):
        page.upload_photo(photo)
        page.upload_own_dance(save_template(template, tmp_path / f"{template.name}.npz"))
    errors = []

    def run(page):
        try:
            page.press_dance()
            page.wait_for_outcome()
        except Exception as err:  # noqa: BLE001 - re-raised below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(page,)) for page in pages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    sources = []
    for i, (page, template) in enumerate(zip(pages, dances)):
        assert page.status().startswith(f"Done: {template.num_frames} frames of {template.name}"), page.status()
        sources.append(page.video()["src"])
        frames, _, _ = read_video(_fetch(sources[-1], tmp_path / f"user{i}.mp4"))
        assert len(frames) == template.num_frames
    assert sources[0] != sources[1]


def test_uploads_over_the_limit_are_refused(web_app):
    from bodydance_client import web

    url, studio = web_app
    boundary = "bodydanceboundary"
    big = b"\xff" * (web.MAX_UPLOAD_BYTES + 1024)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    assert not [p for p in studio.root.rglob("big.jpg")]
    # and an upload within the limit goes through
    small = io.BytesIO()
    Image.open(ASTRONAUT).save(small, format="JPEG")
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + small.getvalue() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
