"""``bodydance`` command line: animate a photo, serve the models, the web page, list templates."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bodydance_client.errors import BodyDanceError

app = typer.Typer(add_completion=False, help="One photo + a dance template -> a video of that person dancing.")
console = Console(stderr=True)

DEFAULT_PHOTO = Path(__file__).parent / "data" / "astronaut.jpg"


def _exit_on_sigterm():
    """SIGTERM unwinds like Ctrl-C, so context managers stop the server and drop partial files."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def _embedded_server(host: str):
    from bodydance.serving.repository import REPOSITORY_ROOT
    from bodydance.serving.server import EmbeddedTritonServer
    from bodydance_export.freshness import ensure_exported

    repository = REPOSITORY_ROOT / "cpu"
    ensure_exported(repository, log=lambda m: console.print(m))
    with console.status("starting the embedded Triton server"):
        server = EmbeddedTritonServer(repository, host=host).start()
    console.print(f"[green]server ready[/] at {server.grpc_url} (log: {server.log_path})")
    try:
        yield server.grpc_url
    finally:
        server.stop()


@app.command()
def animate(
    photo: Path = typer.Argument(DEFAULT_PHOTO, help="photo of one person (JPEG/PNG/...)"),
    template: str = typer.Option("wave", "--template", "-t", help="bundled template name or .npz path"),
    out: Path = typer.Option(Path("out.mp4"), "--out", "-o", help="output MP4 (H.264)"),
    sheet: str = typer.Option("out.png", "--contact-sheet", help="contact sheet PNG ('' to skip)"),
    url: List[str] = typer.Option([], "--url", help="server gRPC host:port (repeat for failover), or a balanced target "
                                    "(dns:///service:8001); none: embedded"),
    window: int = typer.Option(4, help="frames in flight"),
    timeout_s: float = typer.Option(60.0, help="per-request deadline (s)"),
    max_side: int = typer.Option(1920, help="longest side of the video in px (the photo's own resolution up to it)"),
):
    """Turn PHOTO into a dance video at the photo's resolution."""
    from bodydance_client.sdk import BodyDanceClient
    from bodydance_client.templates import resolve_template

    _exit_on_sigterm()
    try:
        dance = resolve_template(template)
        started = time.perf_counter()
        with contextlib.ExitStack() as stack:
            urls = url or [stack.enter_context(_embedded_server("127.0.0.1"))]
            client = stack.enter_context(BodyDanceClient(urls, timeout_s=timeout_s, window=window, max_side=max_side))
            client.wait_until_ready(timeout_s=timeout_s)
            columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console) as progress:
                task = progress.add_task(f"{dance.name}", total=dance.num_frames)
                subject = client.animate(photo, dance, out, contact_sheet_path=Path(sheet) if sheet else None,
                                         progress=lambda done, total: progress.update(task, completed=done))
        note = f", {subject.person_count} people seen (largest used)" if subject.person_count > 1 else ""
        height, width = subject.video_size
        console.print(f"[green]wrote[/] {out} ({dance.num_frames} frames at {width}x{height}, "
                      f"{time.perf_counter() - started:.1f} s{note})"
                      + (f" and {sheet}" if sheet else ""))
    except BodyDanceError as err:
        console.print(f"[red]error ({err.kind}):[/] {err}")
        raise typer.Exit(2)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind; loopback unless you mean otherwise"),
    grpc_port: int = typer.Option(8001), http_port: int = typer.Option(8000), metrics_port: int = typer.Option(8002),
    log: Optional[Path] = typer.Option(None, help="tritonserver log file"),
    repository: Optional[Path] = typer.Option(None, help="model repository (default: the project's cpu profile)"),
):
    """Run the embedded CPU Triton server in the foreground (Ctrl-C or SIGTERM stops it cleanly)."""
    from bodydance.serving.repository import REPOSITORY_ROOT
    from bodydance.serving.server import EmbeddedTritonServer
    from bodydance_export.freshness import ensure_exported

    repository = repository or REPOSITORY_ROOT / "cpu"
    stop = {"now": False, "serving": False}

    class _Interrupted(Exception):
        pass

    def _stop(signum, frame):
        # Installed before start-up, so a signal during start-up stops the server too.
        stop["now"] = True
        if not stop["serving"]:
            raise _Interrupted()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = None
    try:
        ensure_exported(repository, log=lambda m: console.print(m))
        server = EmbeddedTritonServer(repository, host=host, grpc_port=grpc_port, http_port=http_port,
                                      metrics_port=metrics_port, log_path=log)
        server.start()
        stop["serving"] = True
        console.print(f"[green]serving[/] gRPC {server.grpc_url}, HTTP {host}:{server.http_port}, "
                      f"metrics {host}:{server.metrics_port}; log {server.log_path}")
        while not stop["now"] and server.is_running():
            time.sleep(0.5)
    except _Interrupted:
        pass
    except BodyDanceError as err:
        console.print(f"[red]error ({err.kind}):[/] {err}")
        raise typer.Exit(2)
    finally:
        if server is not None:
            server.stop()
    if not stop["now"]:
        console.print(f"[red]tritonserver exited on its own[/]; see {server.log_path}")
        raise typer.Exit(1)


@app.command()
def web(
    host: str = typer.Option("127.0.0.1", help="address the page binds; loopback unless you mean otherwise"),
    port: int = typer.Option(7860, help="the page's port"),
    url: List[str] = typer.Option([], "--url", help="server gRPC host:port (repeat for failover); none: embedded"),
    concurrency: int = typer.Option(2, help="videos made at once (more users wait in the page's queue)"),
    window: int = typer.Option(4, help="frames in flight per video"),
):
    """A web page on this machine: upload a photo, pick a dance, watch and download the video (needs the 'web' extra)."""
    import importlib.util

    from bodydance_client import web as page

    if importlib.util.find_spec("gradio") is None:  # found, not imported: the page sets Gradio's cache folder first
        console.print("[red]the web page needs the 'web' extra[/] (pip install -e '.[web]')")
        raise typer.Exit(2)

    _exit_on_sigterm()
    try:
        with contextlib.ExitStack() as stack:
            urls = url or [stack.enter_context(_embedded_server("127.0.0.1"))]
            page.serve(urls, host=host, port=port, concurrency=concurrency, window=window,
                       on_ready=lambda address: console.print(f"[green]open[/] {address} (Ctrl-C stops)"))
    except KeyboardInterrupt:
        pass
    except BodyDanceError as err:
        console.print(f"[red]error ({err.kind}):[/] {err}")
        raise typer.Exit(2)


@app.command()
def templates():
    """List the bundled dance templates."""
    from bodydance_client.templates import bundled_templates, load_template

    table = Table("name", "frames", "fps", "seconds")
    for name, path in sorted(bundled_templates().items()):
        t = load_template(path)
        table.add_row(name, str(t.num_frames), f"{t.fps:g}", f"{t.duration_s:.1f}")
    Console().print(table)


@app.command("build-template")
def build_template(
    video: Path = typer.Argument(..., help="driving video of one dancer"),
    name: str = typer.Option(..., help="template name"),
    out: Path = typer.Option(..., "--out", "-o", help="template file to write (.npz)"),
    sigma: float = typer.Option(1.5, help="temporal smoothing, Gaussian sigma in frames"),
):
    """Make a dance template from a video (needs the 'server' extra: MediaPipe)."""
    from bodydance.template_builder import build_template as build
    from bodydance_client.templates import save_template

    try:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
            task = bar.add_task(f"reading {video.name}", total=None)
            template = build(video, name, sigma_frames=sigma, progress=lambda n: bar.update(task, completed=n))
        save_template(template, out)
    except BodyDanceError as err:
        console.print(f"[red]error ({err.kind}):[/] {err}")
        raise typer.Exit(2)
    console.print(f"[green]wrote[/] {out}: {template.num_frames} frames at {template.fps:g} fps")


if __name__ == "__main__":
    sys.exit(app())
