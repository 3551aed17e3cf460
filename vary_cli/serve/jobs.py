"""Jobs on disk: uploads, options and finished pages, so that a restarted server finishes what it started.

A job is a directory under `--jobs-dir`: `job.json` (options, documents, final state), its uploads under
server-chosen names (`0.pdf`, `1.png`, ...) and, per document, convert/output.py's `PageStore` sidecar
(`0.pages.jsonl`: one fsynced line per finished page, the same store `vary convert` resumes from).
`JobStore.load` reads them back at start-up: a job that had not finished gets its missing pages queued
again, and pages already in its stores are not redone. A directory without `job.json` is an upload that
never finished, and is removed. Results are rendered on request with `pipeline.render_results`, the
function that writes `vary convert`'s output, so a job's result is byte for byte that output.
A finished job is kept until it is deleted or `--keep-results` has passed (`expire`).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError, one_line
from ..files import atomic_write_bytes, atomic_write_text
from ..render.results import PageResult
from .events import EventLog
from .http import ApiError
from .queue import PageKey, PageTask

FINAL_STATES = ("done", "failed", "cancelled")
PREVIEW_LONG_SIDE = 1200  # pixels of the page images the web page shows


@dataclass
class DocumentSpec:
    """One uploaded document of a job: the client's label, the stored file and the pages asked for."""

    name: str
    file: str
    kind: str
    pages: list[int]
    single: bool  # a lone image: its PageResult has page None, as in `vary convert`

    def key(self, number: int) -> int | None:
        return None if self.single else number


@dataclass
class JobOptions:
    """What changes a job's text: the format asked for, the prompt, tokens per page, and the page ranges."""

    format: str
    prompt: str
    max_new_tokens: int
    pages: str | None = None


@dataclass
class Job:
    """A job in memory: its spec (as in job.json), its finished pages and its event log."""

    id: str
    directory: Path
    options: JobOptions
    documents: list[DocumentSpec]
    created: float
    state: str = "active"  # or one of FINAL_STATES
    finished: float | None = None
    results: dict[tuple[int, int | None], PageResult] = field(default_factory=dict)
    events: EventLog = field(default_factory=EventLog)
    stores: dict[int, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def pages_total(self) -> int:
        return sum(len(doc.pages) for doc in self.documents)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def path(self, index: int) -> Path:
        return self.directory / self.documents[index].file

    def output(self, index: int) -> Path:
        """The output name the document's PageStore hangs off (`<index>` -> sidecar `<index>.pages.jsonl`)."""
        return self.directory / str(index)

    def spec(self) -> dict:
        return {"id": self.id, "created": self.created, "options": asdict(self.options),
                "documents": [asdict(doc) for doc in self.documents], "state": self.state,
                "finished": self.finished}

    def missing(self) -> list[tuple[int, int]]:
        """(document, page number) of every page without a finished result, in order."""
        return [(i, n) for i, doc in enumerate(self.documents) for n in doc.pages if (i, doc.key(n)) not in self.results]

    def errors(self) -> list[dict]:
        return [{"document": i, "name": self.documents[i].name, "page": page or 1, "error": r.error}
                for (i, page), r in sorted(self.results.items(), key=lambda item: (item[0][0], item[0][1] or 0))
                if r.finish_reason == "error"]

    def status(self, pending: int) -> dict:
        """The job's JSON status; `pending` is how many of its pages still wait in the queue."""
        with self.lock:
            done = len(self.results)
            state = self.state
            if not self.final:
                state = "queued" if done == 0 and pending >= self.pages_total else "running"
            documents = [{"name": doc.name, "kind": doc.kind, "pages": len(doc.pages),
                          "pages_done": sum((i, doc.key(n)) in self.results for n in doc.pages)}
                         for i, doc in enumerate(self.documents)]
            return {"job": self.id, "state": state, "pages_done": done, "pages_total": self.pages_total,
                    "documents": documents, "errors": self.errors(), "format": self.options.format,
                    "created": self.created, "finished": self.finished}


def page_event(job: Job, index: int, number: int, result: PageResult) -> dict:
    return {"document": index, "name": job.documents[index].name, "page": number, "text": result.text,
            "finish_reason": result.finish_reason, "tokens": result.tokens, "seconds": result.seconds,
            "error": result.error}


class JobStore:
    """Every job of this server, in memory and under `directory`; see the module docstring.

    `settings(prompt, max_new_tokens)` is the settings fingerprint the page stores are written under (the
    one `vary convert` uses for the same options), so a restart with another model redoes the pages.
    """

    def __init__(self, directory: Path, settings: Callable[[str, int], str]) -> None:
        self.directory = directory
        self.settings = settings
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._documents: dict[tuple[str, int], Any] = {}  # opened raster.Documents, by (job, index)

    def new_directory(self) -> tuple[str, Path]:
        """A fresh job id and its (empty) directory, for an upload to stream into."""
        job_id = uuid.uuid4().hex[:16]
        directory = self.directory / job_id
        directory.mkdir(parents=True)
        return job_id, directory

    def create(self, job_id: str, directory: Path, documents: list[DocumentSpec], options: JobOptions) -> Job:
        """Register a validated job and write its job.json (the last file written: it marks the job complete)."""
        job = Job(job_id, directory, options, documents, created=time.time())
        self._write(job)
        with self._lock:
            self.jobs[job_id] = job
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"no job {job_id!r} (finished jobs are kept until deleted or --keep-results)")
        return job

    def document(self, job: Job, index: int):
        """The opened raster.Document of one of the job's files (opened once, then kept)."""
        from ..convert.raster import open_document

        key = (job.id, index)
        if key not in self._documents:
            self._documents[key] = open_document(job.path(index))
        return self._documents[key]

    def tasks(self, job: Job, done: Callable[[Job, int, int, PageResult], None],
              token: Callable[[PageKey, int], None] | None = None) -> list[PageTask]:
        """A PageTask for every page of `job` that has no finished result yet."""
        tasks = []
        for index, number in job.missing():
            doc = job.documents[index]

            def render(index=index, number=number):
                ((_, image),) = self.document(job, index).iter_pages([number])
                return image

            def text_layer(index=index, number=number):
                from ..convert.text_layer import page_text

                return page_text(job.path(index), number)

            tasks.append(PageTask(PageKey(job.id, index, number), render, job.options.prompt,
                                  job.options.max_new_tokens, source=doc.name, page=doc.key(number),
                                  done=lambda result, index=index, number=number: done(job, index, number, result),
                                  text_layer=text_layer if doc.kind == "pdf" else None,
                                  earlier=lambda index=index, number=number: self.earlier_texts(job, index, number)))
        return tasks

    def earlier_texts(self, job: Job, index: int, number: int) -> list[str]:
        """The text of the document's last pages finished before page `number` (`vary convert`'s ngram
        drafting source)."""
        from ..convert.stream import EARLIER_PAGES

        with job.lock:
            before = sorted(page for (i, page) in job.results if i == index and page is not None and page < number)
            return [job.results[(index, page)].text for page in before[-EARLIER_PAGES:]]

    def record(self, job: Job, index: int, number: int, result: PageResult) -> bool:
        """Store a finished page durably and publish its event; True when it was the job's last page."""
        from ..convert.output import PageStore, source_fingerprint

        path = str(job.path(index))
        if result.error and path in result.error:  # the client knows its file by its own name only
            result.error = result.error.replace(path, job.documents[index].name)
        with job.lock:
            if job.final:
                return False  # cancelled while the page was decoding
            store = job.stores.get(index)
            if store is None:
                store = job.stores[index] = PageStore(job.output(index), source_fingerprint(job.path(index)),
                                                      self.settings(job.options.prompt, job.options.max_new_tokens))
            store.add(result)
            job.results[(index, job.documents[index].key(number))] = result
            job.events.publish("page", page_event(job, index, number, result))
            if job.missing():
                return False
            failed = all(r.finish_reason == "error" for r in job.results.values())
            self._finish(job, "failed" if failed else "done")
            return True

    def cancel(self, job: Job) -> bool:
        """Mark an unfinished job cancelled (its finished pages stay); False if it had already finished."""
        with job.lock:
            if job.final:
                return False
            self._finish(job, "cancelled")
            return True

    def _finish(self, job: Job, state: str) -> None:
        job.state, job.finished = state, time.time()
        for store in job.stores.values():
            store.close()  # kept: the sidecars are the job's results
        job.stores.clear()
        self._write(job)
        job.events.publish("done", {"state": state, "pages_done": len(job.results), "pages_total": job.pages_total})

    def delete(self, job: Job) -> None:
        """Forget a finished `job` and remove its files (its event log was closed when it finished)."""
        with self._lock:
            self.jobs.pop(job.id, None)
            for key in [key for key in self._documents if key[0] == job.id]:
                del self._documents[key]
        shutil.rmtree(job.directory, ignore_errors=True)

    def expire(self, keep_seconds: float | None, now: float | None = None) -> list[str]:
        """Delete finished jobs older than `keep_seconds` (`--keep-results`); their ids."""
        if keep_seconds is None:
            return []
        now = time.time() if now is None else now
        with self._lock:
            old = [job for job in self.jobs.values() if job.final and job.finished + keep_seconds < now]
        for job in old:
            self.delete(job)
        return [job.id for job in old]

    def result_text(self, job: Job, index: int, fmt: str) -> str:
        """Document `index`'s output in `fmt`: the text `vary convert` writes for it with the job's options."""
        from ..convert.pipeline import render_results

        with job.lock:
            doc = job.documents[index]
            ordered = [job.results[(index, doc.key(n))] for n in doc.pages]
        return render_results(ordered, fmt, job.path(index), self.document(job, index), None)

    def page_image(self, job: Job, index: int, number: int) -> bytes:
        """A PNG of one page as the model saw it (long side at most PREVIEW_LONG_SIDE), cached beside the job."""
        import io

        cached = job.directory / f"{index}-{number}.png"
        if cached.is_file():
            return cached.read_bytes()
        ((_, image),) = self.document(job, index).iter_pages([number])
        image.thumbnail((PREVIEW_LONG_SIDE, PREVIEW_LONG_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        atomic_write_bytes(cached, buffer.getvalue())
        return buffer.getvalue()

    def load(self) -> list[Job]:
        """Read every job under `directory` (at start-up); the unfinished ones, oldest first, to queue again.

        A job whose files cannot be read any more fails with that reason, and the server goes on.
        """
        from ..convert.output import PageStore, read_pages, source_fingerprint

        unfinished = []
        if not self.directory.is_dir():
            return unfinished
        for directory in sorted(self.directory.iterdir()):
            if not directory.is_dir():
                continue
            spec_path = directory / "job.json"
            if not spec_path.is_file():
                shutil.rmtree(directory, ignore_errors=True)  # an upload cut short
                continue
            try:
                job = _from_spec(json.loads(spec_path.read_text(encoding="utf-8")), directory)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not ours, or damaged: left alone
            for index, doc in enumerate(job.documents):
                try:
                    fingerprint = source_fingerprint(job.path(index))
                except OSError:
                    continue
                if job.final:  # whatever settings it was made with
                    found = read_pages(job.output(index), fingerprint, None)
                else:
                    store = PageStore(job.output(index), fingerprint,
                                      self.settings(job.options.prompt, job.options.max_new_tokens))
                    job.stores[index] = store
                    found = store.finished
                for page, result in found.items():
                    job.results[(index, page)] = result
            for (index, page), result in sorted(job.results.items(), key=lambda item: (item[0][0], item[0][1] or 0)):
                job.events.publish("page", page_event(job, index, page or 1, result))
            with self._lock:
                self.jobs[job.id] = job
            if job.final:
                job.events.publish("done", {"state": job.state, "pages_done": len(job.results),
                                            "pages_total": job.pages_total})
                continue
            try:
                for index in range(len(job.documents)):
                    self.document(job, index)
            except InputError as error:  # its upload went missing or bad meanwhile: its pages fail
                with job.lock:
                    for index, number in job.missing():
                        doc = job.documents[index]
                        job.results[(index, doc.key(number))] = PageResult(
                            source=doc.name, page=doc.key(number), text="", finish_reason="error", tokens=0,
                            seconds=0.0, error=one_line(error).replace(str(job.path(index)), doc.name)[:300])
                    failed = all(r.finish_reason == "error" for r in job.results.values())
                    self._finish(job, "failed" if failed else "done")
                continue
            if not job.missing():  # killed after its last page was stored, before job.json said so
                with job.lock:
                    self._finish(job, "done")
                continue
            unfinished.append(job)
        return sorted(unfinished, key=lambda job: job.created)

    def _write(self, job: Job) -> None:
        atomic_write_text(job.directory / "job.json", json.dumps(job.spec(), ensure_ascii=False, indent=1) + "\n")


def _from_spec(spec: dict, directory: Path) -> Job:
    return Job(spec["id"], directory, JobOptions(**spec["options"]),
               [DocumentSpec(**doc) for doc in spec["documents"]], created=spec["created"],
               state=spec.get("state", "active"), finished=spec.get("finished"))
