"""`vary serve`: load the model once and serve it over HTTP to many clients, sharing one continuous batch.

Mounted on the app by `cli/app.py`. Checks the flags, binds the socket (so a busy port fails before the
model loads, and `--port 0` can say which port it got), loads one model per engine thread,
prints one start-up line (URL, model, device, auth) and runs uvicorn until Ctrl-C or SIGTERM. Each
request is logged on stderr in the Combined Log Format. The server itself is vary_cli/serve/.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (DebugOption, DeviceOption, DraftOption, DtypeOption, MaxTokensOption, ModelOption, draft_config,
                     fail, stderr)
from ..errors import VaryError


def serve(
    model: ModelOption = "vary-toy",
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=0, help="Pages decoding together per engine; 0 picks from free device memory.")] = 0,
    draft: DraftOption = "auto",
    host: Annotated[str, typer.Option(help="Address to listen on; only this machine by default.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 8000,
    token: Annotated[Optional[str], typer.Option("--token", envvar="VARY_SERVE_TOKEN", show_default=False,
                                                 help="Require Authorization: Bearer TOKEN on every route but /healthz (or set VARY_SERVE_TOKEN).")] = None,
    jobs_dir: Annotated[Optional[Path], typer.Option("--jobs-dir", help="Where jobs and their pages are kept across restarts (default VARY_HOME/serve/jobs).")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest request body in MiB, cut off while it streams.")] = 200.0,
    max_job_pages: Annotated[int, typer.Option("--max-job-pages", help="Most pages one job may ask for.")] = 1000,
    max_queue_pages: Annotated[int, typer.Option("--max-queue-pages", help="Most pages waiting over all jobs; beyond, new work gets 429.")] = 10000,
    max_new_tokens: MaxTokensOption = 2048,
    keep_results: Annotated[Optional[str], typer.Option("--keep-results", help="Delete finished jobs after this long (90s, 30m, 12h, 7d); kept until deleted by default.")] = None,
    cors: Annotated[Optional[list[str]], typer.Option("--cors", help="Let pages from this origin call the API (repeatable); off by default.")] = None,
    allow_remote_images: Annotated[bool, typer.Option("--allow-remote-images", help="Let chat completions fetch http(s) image URLs (data: URLs only by default).")] = False,
    workers_per_gpu: Annotated[int, typer.Option("--workers-per-gpu", min=1, help="Engine threads per device, each with its own copy of the model.")] = 1,
    debug: DebugOption = False,
) -> None:
    """Serve a model over HTTP: jobs, an OpenAI-compatible endpoint and a web page, sharing one batch."""
    try:
        from ..serve.config import ServeConfig, parse_duration
        from ..weights.hub import vary_home

        config = ServeConfig(jobs_dir=(jobs_dir or vary_home() / "serve" / "jobs").expanduser(), model_name=model,
                             host=host, port=port, token=token, max_upload_mb=max_upload_mb,
                             max_job_pages=max_job_pages, max_queue_pages=max_queue_pages,
                             max_new_tokens=max_new_tokens, cors=tuple(cors or ()),
                             keep_results=parse_duration(keep_results) if keep_results else None,
                             allow_remote_images=allow_remote_images)
        draft_config(draft)  # a bad --draft fails before the socket and the model
        listener = bind(host, port)
        service = build_service(config, model, device, dtype, batch_size, draft, workers_per_gpu)
        run(config, service, listener)
    except VaryError as error:
        fail(error, debug)
    except KeyboardInterrupt:
        stderr.print("stopped")
        raise typer.Exit(code=130) from None


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (IPv4 or IPv6), or a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise VaryError(f"cannot listen on {host}:{port} ({error.strerror or error}); pick another --port or "
                        "--host") from None
    listener.listen(128)
    listener.set_inheritable(True)
    return listener


def build_service(config, model: str, device: str, dtype: str, batch_size: int, draft: str, workers_per_gpu: int):
    """Load one model per engine thread (each device, `workers_per_gpu` times) and the service over them."""
    import torch

    from ..serve.backend import ModelBackend
    from ..serve.service import Service
    from .common import load_model

    devices = [device]
    if device in ("auto", "cuda") and torch.cuda.is_available() and torch.cuda.device_count() > 1:
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    backends = [ModelBackend(load_model(model, d, dtype, quiet=True), config.max_new_tokens, batch_size, draft)
                for d in devices for _ in range(workers_per_gpu)]
    return Service(config, backends)


def run(config, service, listener: socket.socket) -> None:
    import uvicorn

    from ..serve.app import create_app

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("vary.serve", "vary.serve.access"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    address, port = listener.getsockname()[:2]
    shown = f"[{address}]" if ":" in address else address
    info = service.backend.info()
    auth = "auth on (bearer token)" if config.token else "auth off (no --token)"
    engines = f", {len(service.workers)} engines" if len(service.workers) > 1 else ""
    stderr.print(f"vary serve: http://{shown}:{port}/ · model {config.model_name} on {info['device']} "
                 f"({info['dtype']}), batch {service.backend.batch_size}{engines} · {auth} · jobs in {config.jobs_dir}",
                 highlight=False, markup=False)
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=5))
    server.run(sockets=[listener])
