"""The server's state in one object: settings, the fair queue, the engine threads, the job store, counters.

The routes call `Service` only; it never touches an engine itself. `create_job` checks a job's options
and documents (the same checks `vary convert` makes) before any page is queued, `submit_page` queues a
single page for /v1/ocr and chat completions, and `cancel_*` drops pages from the queue at once and from
the engines at their next step.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..errors import InputError, one_line
from .config import ServeConfig
from .events import EventLog
from .http import ApiError
from .jobs import DocumentSpec, Job, JobOptions, JobStore
from .queue import FairQueue, PageKey, PageTask
from .uploads import Form
from .worker import Stats, Worker

log = logging.getLogger("vary.serve")

JOB_FIELDS = ("format", "pages", "prompt", "max_new_tokens")


class Service:
    """See the module docstring. `backends`: one per engine thread (each with its own model)."""

    def __init__(self, config: ServeConfig, backends: list[Any]) -> None:
        if not backends:
            raise ValueError("a server needs at least one backend")
        self.config = config
        self.backend = backends[0]  # the tokenizer and settings every backend shares
        self.queue = FairQueue(config.max_queue_pages)
        self.stats = Stats()
        self.jobs = JobStore(config.jobs_dir, self.backend.settings)
        self.workers = [Worker(f"engine-{i}", backend, self.queue, self.stats) for i, backend in enumerate(backends)]

    def start(self) -> list[Job]:
        """Pick up the jobs on disk, queue their missing pages and start the engine threads; the resumed jobs."""
        self.config.jobs_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.requests_dir, ignore_errors=True)  # single-request uploads of a previous run
        resumed = self.jobs.load()
        for job in resumed:
            self.queue.add(job.id, self.jobs.tasks(job, self._page_done), force=True)
            log.info("resuming job %s: %d of %d page(s) left", job.id, len(job.missing()), job.pages_total)
        for worker in self.workers:
            worker.start()
        return resumed

    def stop(self) -> None:
        self.queue.close()
        for worker in self.workers:
            worker.stop()

    @property
    def requests_dir(self) -> Path:
        return self.config.jobs_dir / ".requests"

    def create_job(self, job_id: str, directory: Path, form: Form) -> Job:
        """Validate an uploaded job and queue its pages (blocking: opens each document; run off the event loop).

        Raises:
            ApiError: 400 for a bad option, page range or document; 413 past --max-job-pages; 429 when the
                queue is full.
        """
        from ..convert.raster import open_document, parse_page_ranges, select_pages
        from ..render.document import FORMATS
        from ..text.prompts import FORMAT_PROMPTS

        fields = form.fields
        unknown = sorted(set(fields) - set(JOB_FIELDS))
        if unknown:
            raise ApiError(400, f"unknown form field {unknown[0]!r}; the fields are {', '.join(JOB_FIELDS)}")
        fmt = fields.get("format") or "md"
        if fmt not in FORMATS:
            raise ApiError(400, f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        options = JobOptions(fmt, fields.get("prompt") or FORMAT_PROMPTS[fmt],
                             self.max_new_tokens(fields.get("max_new_tokens")), fields.get("pages") or None)
        try:
            ranges = parse_page_ranges(options.pages) if options.pages else None
        except InputError as error:
            raise ApiError(400, str(error).replace("--pages", "pages")) from None
        documents = []
        for upload in form.files:
            try:
                document = open_document(upload.path)
                wanted = select_pages(ranges, document.page_count, upload.name)
            except InputError as error:
                raise ApiError(400, one_line(error).replace(str(upload.path), upload.name).replace("--pages", "pages")) from None
            documents.append(DocumentSpec(upload.name, upload.path.name, upload.kind, wanted, document.is_single_image))
        pages = sum(len(doc.pages) for doc in documents)
        if pages > self.config.max_job_pages:
            raise ApiError(413, f"the job has {pages} pages; this server takes at most {self.config.max_job_pages} "
                                "per job (--max-job-pages): send fewer pages or split the job")
        job = self.jobs.create(job_id, directory, documents, options)
        try:
            self.queue.add(job.id, self.jobs.tasks(job, self._page_done))
        except ApiError:
            self.jobs.delete(job)
            raise
        return job

    def max_new_tokens(self, given: Any) -> int:
        """A request's tokens per page: the server's --max-new-tokens unless it asks for fewer."""
        if given is None or given == "":
            return self.config.max_new_tokens
        try:
            value = int(given)
        except (TypeError, ValueError):
            raise ApiError(400, f"max_new_tokens must be a whole number, not {str(given)[:40]!r}") from None
        if not 1 <= value <= self.config.max_new_tokens:
            raise ApiError(400, f"max_new_tokens must be between 1 and {self.config.max_new_tokens} "
                                "(this server's --max-new-tokens)")
        return value

    def _page_done(self, job: Job, index: int, number: int, result) -> None:
        self.jobs.record(job, index, number, result)

    def cancel_job(self, job: Job) -> bool:
        """Cancel an unfinished job: its queued pages leave now, its rows at the engines' next step."""
        cancelled = self.jobs.cancel(job)
        if cancelled:
            self.cancel_group(job.id)
        return cancelled

    def cancel_group(self, group: str) -> None:
        self.queue.cancel(group)
        for worker in self.workers:
            worker.cancel(group)

    def submit_page(self, image, prompt: str, max_new_tokens: int, source: str,
                    stream: bool = False) -> tuple[str, EventLog]:
        """Queue one page image on its own (a group of its own in the round-robin).

        Returns its group (to cancel it) and an event log that gets a `token` event per token when
        `stream`, and then a `result` event with the PageResult.
        """
        group = f"request-{uuid.uuid4().hex[:12]}"
        events = EventLog(final=("result",))
        task = PageTask(PageKey(group, 0, 1), lambda: image, prompt, max_new_tokens, source=source, page=None,
                        done=lambda result: events.publish("result", result),
                        token=(lambda token: events.publish("token", token)) if stream else None)
        self.queue.add(group, [task])
        return group, events

    def health(self) -> dict:
        """Liveness and load: the model, queue, pages/s, the workers' counters and the engines' own
        (`forward_passes`, `row_passes`: rows per pass above 1 means pages shared batches)."""
        info = self.backend.info()
        counters = self.stats.snapshot()
        engines = [worker.engine for worker in self.workers if worker.engine is not None]
        engine = {name: sum(getattr(e, name, 0) for e in engines) for name in ("forward_passes", "row_passes", "tokens")}
        return {"status": "ok", **info, "queue": len(self.queue), "active": counters.pop("active"),
                "pages_per_second": round(self.stats.pages_per_second(), 3), "jobs": len(self.jobs.jobs),
                "engines": len(self.workers), "batch_size": self.backend.batch_size, **counters, "engine": engine}
