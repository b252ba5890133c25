"""``bodydance web``: a local web page that turns an uploaded photo into a dance video.

The page (Gradio, the ``web`` extra) takes a photo (upload, webcam or clipboard), a bundled dance or
the user's own (a driving video, which the template builder turns into a template, or a template
``.npz``), and shows the video, a download button and the contact sheet. Every job gets its own
folder and its own client, so several people at once each get their own video; the folder goes
as soon as the page has its copy, and whatever is left goes when the app stops. Typed errors
become one plain sentence in the page (:func:`user_message`); nothing else reaches it.

Nothing leaves the machine: analytics off, no share link, the default theme's fonts are served by
the app itself, and the app binds 127.0.0.1 unless told otherwise.

    bodydance web                       # starts the embedded Triton server too
    bodydance web --url 10.0.0.5:8001   # against a running server
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

# Before gradio is imported anywhere: no telemetry, no version check against the internet.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from bodydance_client.errors import (  # noqa: E402
    BadImageError, BadTemplateError, BodyDanceError, InvalidRequestError, NoPersonError, PhotoNotUprightError,
    RequestTimeoutError, ServerNotReadyError, ServerStartError,
)
from bodydance_client.templates import Template, bundled_templates, load_bundled, load_template  # noqa: E402

log = logging.getLogger("bodydance.web")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
MAX_UPLOAD_BYTES = 25 * 2**20  # any one upload, refused by the app's upload route before it is stored
MAX_VIDEO_SECONDS = 20.0  # a driving video longer than this is refused before the template builder runs
MAX_VIDEO_FRAMES = 600  # and the builder stops at this many frames whatever the header said
JOB_TTL_S = 15 * 60  # a job folder the page never collected is removed after this long
OWN_DANCE = "my own (upload below)"
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
TEMPLATE_SUFFIX = ".npz"

ProgressFn = Callable[[int, Optional[int], str], None]  # (done, total or None, what)


class UploadRefusedError(BodyDanceError, ValueError):
    """An upload the page does not take (too large, too long, missing, an unknown kind of file)."""

    kind = "upload_refused"


# -- messages --------------------------------------------------------------------------------------
def user_message(err: BaseException) -> str:
    """The one plain sentence (or two) the page shows for an error; never a traceback or a path."""
    if isinstance(err, PhotoNotUprightError):
        return ("The person in this photo is upside down or lying on their side. "
                "Turn the photo so that they stand upright, then try again.")
    if isinstance(err, NoPersonError):
        return ("No person was found in this photo. Use a photo where one person is clearly visible "
                "and not too small, ideally head to feet and facing the camera.")
    if isinstance(err, BadImageError):
        return "This file could not be read as a photo. Use a JPEG, PNG or WebP picture at least 16 px a side."
    if isinstance(err, BadTemplateError):
        return f"This dance could not be used: {_plain(err)}."
    if isinstance(err, UploadRefusedError):
        return f"{_plain(err)}."
    if isinstance(err, (ServerNotReadyError, ServerStartError)):
        return "The dance server is not answering right now. Try again in a minute."
    if isinstance(err, RequestTimeoutError):
        return "The dance server is too busy right now and did not answer in time. Try again in a minute."
    if isinstance(err, InvalidRequestError):
        return "The dance server refused this request. Try another photo or dance."
    return "Something went wrong on our side and the video was not made. Try again; if it keeps happening, " \
           "the details are in the app's log."


def _plain(err: BaseException) -> str:
    """An error's own text, first line only, without a trailing full stop and without file paths."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    words = [w for w in text.split() if not (os.sep in w and len(w) > 1)]
    text = " ".join(words).strip(" :;,")
    text = text[0].upper() + text[1:] if text else text
    return text.rstrip(".")


def status_markdown(result: "Optional[DanceResult]" = None, error: Optional[BaseException] = None) -> str:
    if error is not None:
        return f"**The video was not made.** {user_message(error)}"
    if result is None:
        return ""
    people = f" {result.person_count} people were seen in the photo; the largest one dances." \
        if result.person_count > 1 else ""
    width, height = result.size
    return (f"**Done:** {result.frames} frames of *{result.template_name}* at {width} x {height} "
            f"in {result.seconds:.1f} s.{people}")


# -- uploads ---------------------------------------------------------------------------------------
def check_upload(path: Union[str, os.PathLike], what: str, limit: int = MAX_UPLOAD_BYTES) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UploadRefusedError(f"The {what} did not arrive; upload it again")
    size = path.stat().st_size
    if size == 0:
        raise UploadRefusedError(f"The {what} is empty (0 bytes)")
    if size > limit:
        raise UploadRefusedError(f"The {what} is {size / 2**20:.1f} MB; the limit is {limit / 2**20:.0f} MB")
    return path


def video_length_s(path: Path) -> Optional[float]:
    """The driving video's length in seconds from its header (None when the header does not say)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BadTemplateError("the file has no video in it")
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / 1e6
            return None
    except av.error.FFmpegError as err:
        raise BadTemplateError("the file is not a video this app can read") from err


def check_driving_video(path: Path) -> None:
    length = video_length_s(path)
    if length is not None and length > MAX_VIDEO_SECONDS:
        raise UploadRefusedError(f"The video is {length:.0f} s long; the limit is {MAX_VIDEO_SECONDS:.0f} s. "
                                 "Trim it to the dance")


# -- the jobs --------------------------------------------------------------------------------------
@dataclasses.dataclass
class DanceResult:
    video: Path
    sheet: Path
    job: Path  # the job's folder: remove with :meth:`DanceStudio.release` once the page has its copy
    frames: int
    template_name: str
    size: tuple  # (width, height) px
    person_count: int
    seconds: float


class DanceStudio:
    """What the page does, without the page: photo + dance -> video + contact sheet in a job folder.

    Thread-safe: each job has its own folder and its own client (gRPC connections are cheap), so
    concurrent jobs share nothing but the server.
    """

    def __init__(self, urls: Union[str, Sequence[str]], *, window: int = 4, timeout_s: float = 120.0,
                 max_side: Optional[int] = None, root: Optional[Path] = None, job_ttl_s: float = JOB_TTL_S):
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.window = window
        self.timeout_s = timeout_s
        self.max_side = max_side
        self.job_ttl_s = job_ttl_s
        self.root = Path(tempfile.mkdtemp(prefix="bodydance-web-", dir=root))
        self.dances = sorted(bundled_templates())
        self._lock = threading.Lock()

    def _client(self):
        from bodydance_client.sdk import BodyDanceClient

        options = {"max_side": self.max_side} if self.max_side else {}
        return BodyDanceClient(self.urls, timeout_s=self.timeout_s, window=self.window, **options)

    # -- templates -----------------------------------------------------------------------------
    def template(self, dance: Optional[str], own: Optional[Union[str, os.PathLike]] = None,
                 progress: Optional[ProgressFn] = None) -> Template:
        """The bundled dance by name, or (``dance == OWN_DANCE``) the user's template or driving video."""
        if dance != OWN_DANCE:
            if dance not in self.dances:
                raise UploadRefusedError(f"Pick one of the dances ({', '.join(self.dances)}) or upload your own")
            return load_bundled(dance)
        if not own:
            raise UploadRefusedError("Upload a driving video (or a template .npz) for your own dance, "
                                     "or pick a bundled dance")
        path = check_upload(own, "dance file")
        suffix = path.suffix.lower()
        if suffix == TEMPLATE_SUFFIX:
            return load_template(path)
        if suffix not in VIDEO_SUFFIXES:
            raise UploadRefusedError(f"A dance is a video ({', '.join(VIDEO_SUFFIXES)}) or a template "
                                     f"({TEMPLATE_SUFFIX}), not a {suffix or 'file without an extension'} file")
        check_driving_video(path)
        from bodydance.template_builder import build_template

        def read(n: int) -> None:
            if progress:
                progress(n, None, "reading your dance video (frames)")

        try:
            return build_template(path, "your dance", max_frames=MAX_VIDEO_FRAMES, progress=read)
        except BadTemplateError as err:
            # the builder names the file; the page should not show the upload's path
            raise BadTemplateError(str(err).replace(f"{path}: ", "")) from err

    # -- one job ---------------------------------------------------------------------------------
    def dance(self, photo: Optional[Union[str, os.PathLike]], dance: Optional[str],
              own: Optional[Union[str, os.PathLike]] = None,
              progress: Optional[ProgressFn] = None) -> DanceResult:
        from bodydance_client.sdk import Recording

        started = time.perf_counter()
        self.sweep()
        if not photo:
            raise UploadRefusedError("Upload a photo first (or take one with the webcam)")
        photo = check_upload(photo, "photo")
        template = self.template(dance, own, progress)
        job = self.root / f"job-{uuid.uuid4().hex}"
        job.mkdir()
        try:
            with self._client() as client:
                client.wait_until_ready(timeout_s=min(self.timeout_s, 30.0))
                if progress:
                    progress(0, template.num_frames, "finding the person in the photo")
                subject = client.prepare(photo)
                stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in template.name) or "dance"
                video, sheet = job / f"{stem}.mp4", job / f"{stem}_sheet.png"

                def made(done: int, total: int) -> None:
                    if progress:
                        progress(done, total, "making frames")

                with Recording(video, template, photo=subject.photo, contact_sheet_path=sheet,
                               progress=made) as recording:
                    for frame in client.frames(subject, template):
                        recording.add(frame)
            height, width = subject.video_size
            return DanceResult(video, sheet, job, template.num_frames, template.name, (width & ~1, height & ~1),
                               subject.person_count, time.perf_counter() - started)
        except BaseException:
            shutil.rmtree(job, ignore_errors=True)
            raise

    # -- temporary files -------------------------------------------------------------------------
    def release(self, job: Optional[Union[str, os.PathLike]]) -> None:
        """Remove one job's folder (only ever one inside this studio's root)."""
        if not job:
            return
        job = Path(job).resolve()
        if job.parent == self.root.resolve() and job.name.startswith("job-"):
            shutil.rmtree(job, ignore_errors=True)

    def sweep(self, now: Optional[float] = None) -> List[Path]:
        """Remove job folders older than ``job_ttl_s`` (pages closed before they collected them)."""
        now = time.time() if now is None else now
        gone = []
        with self._lock:
            for job in self.root.glob("job-*"):
                try:
                    old = now - job.stat().st_mtime > self.job_ttl_s
                except FileNotFoundError:
                    continue
                if old:
                    shutil.rmtree(job, ignore_errors=True)
                    gone.append(job)
        return gone

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# -- the page --------------------------------------------------------------------------------------
CSS = """
#status { min-height: 2.5em; }
footer { display: none !important; }
"""

INTRO = """# BodyDance
One photo of a person and a dance: a video of that person dancing. Upload a photo (or take one with
the webcam), pick a dance, press **Dance**. Your own dance: a short video of one person dancing
(at most {seconds:.0f} s; it is turned into a dance template first) or a template `.npz`.
Uploads up to {mb:.0f} MB; your files are deleted when the video has been handed to the page.
"""


_CACHE_WE_SET: dict = {}


def _tolerant_preprocess(component):
    """Let a file Pillow cannot open reach :meth:`DanceStudio.dance` as a path, so it is refused with the
    page's own message (BadImageError) instead of Gradio's bare 'Error'."""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except Exception:  # noqa: BLE001 - any decoding failure: the client names it
            path = getattr(payload, "path", None)
            return str(path) if path else None

    component.preprocess = preprocess
    return component


def build_app(studio: DanceStudio, *, concurrency: int = 2, queue_size: int = 16):
    """The Gradio Blocks of the page, on ``studio``.

    Gradio's own cache (the uploads, and the copies of the videos it serves) goes inside the studio's
    root, so :meth:`DanceStudio.close` removes it too, unless GRADIO_TEMP_DIR says otherwise.
    """
    if os.environ.get("GRADIO_TEMP_DIR") in (None, "", _CACHE_WE_SET.get("dir")):
        _CACHE_WE_SET["dir"] = os.environ["GRADIO_TEMP_DIR"] = str(studio.root / "gradio")
    import gradio as gr

    def on_dance(photo, dance, own, progress=gr.Progress()):
        def report(done: int, total: Optional[int], what: str) -> None:
            progress((done, total), desc=what, unit="frames")

        try:
            result = studio.dance(photo, dance, own, progress=report)
        except BodyDanceError as err:
            log.info("refused: %s: %s", type(err).__name__, err)
            return None, None, status_markdown(error=err), None
        except Exception as err:  # noqa: BLE001 - logged in full, shown as one plain sentence
            log.exception("dance failed")
            return None, None, status_markdown(error=err), None
        return str(result.video), str(result.sheet), status_markdown(result), str(result.job)

    with gr.Blocks(title="BodyDance", analytics_enabled=False, delete_cache=(600, 3600)) as blocks:
        gr.Markdown(INTRO.format(seconds=MAX_VIDEO_SECONDS, mb=MAX_UPLOAD_BYTES / 2**20))
        job = gr.State(None)
        with gr.Row():
            with gr.Column():
                photo = _tolerant_preprocess(gr.Image(
                    label="Photo of one person", type="filepath", image_mode=None,
                    sources=["upload", "webcam", "clipboard"], elem_id="photo", height=360))
                dance = gr.Radio(studio.dances + [OWN_DANCE], value=studio.dances[0], label="Dance", elem_id="dance")
                own = gr.File(label=f"Your own dance: a video (at most {MAX_VIDEO_SECONDS:.0f} s) or a template .npz",
                              file_types=list(VIDEO_SUFFIXES) + [TEMPLATE_SUFFIX], type="filepath", elem_id="own")
                go = gr.Button("Dance", variant="primary", elem_id="dance-button")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                video = gr.Video(label="Your dance", elem_id="result", autoplay=True, loop=True, height=420,
                                 buttons=["download"], interactive=False)
                sheet = gr.Image(label="Contact sheet", type="filepath", elem_id="sheet", interactive=False,
                                 buttons=["download", "fullscreen"])
        # Picking a file for your own dance picks "my own" too.
        own.upload(lambda _: OWN_DANCE, inputs=own, outputs=dance, queue=False)
        go.click(on_dance, inputs=[photo, dance, own], outputs=[video, sheet, status, job],
                 concurrency_limit=concurrency, concurrency_id="dance") \
          .then(studio.release, inputs=job, outputs=None, queue=False)
    blocks.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    return blocks


def launch(blocks, studio: DanceStudio, *, host: str = DEFAULT_HOST, port: Optional[int] = DEFAULT_PORT,
           quiet: bool = False):
    """Start serving ``blocks`` in the background; returns the page's URL. Nothing is shared publicly."""
    _, url, _ = blocks.launch(
        server_name=host, server_port=port, share=False, inbrowser=False, prevent_thread_lock=True,
        show_error=False, max_file_size=MAX_UPLOAD_BYTES, allowed_paths=[str(studio.root)], quiet=quiet,
        ssr_mode=False, pwa=False, mcp_server=False, enable_monitoring=False, css=CSS,
    )
    return url


def serve(urls: Union[str, Sequence[str]], *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          concurrency: int = 2, window: int = 4, timeout_s: float = 120.0,
          on_ready: Optional[Callable[[str], None]] = None) -> None:
    """Serve the page until interrupted (KeyboardInterrupt / SystemExit), then remove every file it made."""
    studio = DanceStudio(urls, window=window, timeout_s=timeout_s)
    blocks = None
    try:
        blocks = build_app(studio, concurrency=concurrency)
        url = launch(blocks, studio, host=host, port=port, quiet=True)
        if on_ready:
            on_ready(url)
        while True:
            time.sleep(1.0)
    finally:
        if blocks is not None:
            blocks.close()
        studio.close()
