"""Job routes: upload documents, follow their pages, read the assembled output, cancel.

    POST   /v1/convert                        multipart `file` parts + format, pages, prompt, max_new_tokens -> 202 {"job"}
    GET    /v1/jobs                           every job's status
    GET    /v1/jobs/{id}                      {"job", "state", "pages_done", "pages_total", "documents", "errors"}
    GET    /v1/jobs/{id}/events               server-sent events: `page` per finished page, then `done`
    GET    /v1/jobs/{id}/result               ?format=md|mmd|tex|txt|jsonl&document=N: `vary convert`'s bytes
    GET    /v1/jobs/{id}/documents/{d}/pages/{n}        one page as mmd, md, tex and HTML (the web page)
    GET    /v1/jobs/{id}/documents/{d}/pages/{n}/image  the page image (PNG)
    DELETE /v1/jobs/{id}                      cancel an unfinished job; delete a finished one
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import PurePath
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from .events import sse
from .http import ApiError
from .uploads import receive_form

router = APIRouter()

MEDIA_TYPES = {"md": "text/markdown", "mmd": "text/markdown", "tex": "application/x-tex", "txt": "text/plain",
               "jsonl": "application/x-ndjson"}


@router.post("/v1/convert", status_code=202)
async def convert(request: Request) -> JSONResponse:
    service = request.app.state.service
    job_id, directory = service.jobs.new_directory()
    try:
        form = await receive_form(request.stream(), request.headers.get("content-type"),
                                  request.headers.get("content-length"), directory, service.config.max_upload_bytes)
        job = await run_in_threadpool(service.create_job, job_id, directory, form)
    except ClientDisconnect:
        shutil.rmtree(directory, ignore_errors=True)
        return JSONResponse({"error": "the client went away during the upload"}, status_code=400)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return JSONResponse({"job": job.id}, status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("/v1/jobs")
async def jobs(request: Request) -> dict:
    service = request.app.state.service
    listed = sorted(service.jobs.jobs.values(), key=lambda job: job.created)
    return {"jobs": [job.status(service.queue.pending(job.id)) for job in listed]}


@router.get("/v1/jobs/{job_id}")
async def job_status(job_id: str, request: Request) -> dict:
    service = request.app.state.service
    job = service.jobs.get(job_id)
    return job.status(service.queue.pending(job.id))


@router.get("/v1/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    job = request.app.state.service.jobs.get(job_id)
    last = request.headers.get("last-event-id", "")
    start = int(last) + 1 if last.isdigit() else 0

    async def stream():
        async for event in job.events.follow(start):
            yield sse(event)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/v1/jobs/{job_id}/result")
async def job_result(job_id: str, request: Request, format: str | None = None, document: int | None = None) -> Response:
    from ..render.document import FORMATS, SUFFIX_FOR_FORMAT

    service = request.app.state.service
    job = service.jobs.get(job_id)
    fmt = format or job.options.format
    if fmt not in FORMATS:
        raise ApiError(400, f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if job.state not in ("done", "failed"):
        state = job.status(service.queue.pending(job.id))
        raise ApiError(409, f"job {job.id} is {state['state']} ({state['pages_done']} of {state['pages_total']} "
                            "pages); its result is ready once its state is done")
    index = _document_index(job, document)
    text = await run_in_threadpool(service.jobs.result_text, job, index, fmt)
    name = PurePath(job.documents[index].name).stem + SUFFIX_FOR_FORMAT[fmt]
    return Response(text.encode("utf-8"), media_type=f"{MEDIA_TYPES[fmt]}; charset=utf-8",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"})


@router.get("/v1/jobs/{job_id}/documents/{document}/pages/{page}")
async def page_view(job_id: str, document: int, page: int, request: Request) -> dict:
    from ..render.document import render_page
    from .view import page_html

    job = request.app.state.service.jobs.get(job_id)
    index = _document_index(job, document)
    doc = job.documents[index]
    result = job.results.get((index, doc.key(page)))
    if result is None:
        raise ApiError(404, f"page {page} of document {index} has not finished (or is not in the job)")
    alone = replace(result, page=page)
    md = render_page(alone, "md")
    html = await run_in_threadpool(page_html, md)
    return {"document": index, "page": page, "finish_reason": result.finish_reason, "error": result.error,
            "mmd": render_page(alone, "mmd"), "md": md, "tex": render_page(alone, "tex"), "html": html}


@router.get("/v1/jobs/{job_id}/documents/{document}/pages/{page}/image")
async def page_image(job_id: str, document: int, page: int, request: Request) -> Response:
    service = request.app.state.service
    job = service.jobs.get(job_id)
    index = _document_index(job, document)
    if page not in job.documents[index].pages:
        raise ApiError(404, f"page {page} of document {index} is not in the job")
    png = await run_in_threadpool(service.jobs.page_image, job, index, page)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})


@router.delete("/v1/jobs/{job_id}")
async def delete_job(job_id: str, request: Request) -> dict:
    service = request.app.state.service
    job = service.jobs.get(job_id)
    if service.cancel_job(job):
        return {"job": job.id, "state": "cancelled"}
    await run_in_threadpool(service.jobs.delete, job)
    return {"job": job.id, "deleted": True}


def _document_index(job, document: int | None) -> int:
    if document is None:
        if len(job.documents) > 1:
            raise ApiError(400, f"job {job.id} has {len(job.documents)} documents; add ?document=0 .. "
                                f"{len(job.documents) - 1}")
        return 0
    if not 0 <= document < len(job.documents):
        raise ApiError(404, f"job {job.id} has no document {document} (it has {len(job.documents)})")
    return document
