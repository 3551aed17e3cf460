"""pages/s and time to first page of `vary serve` with 1, 4 and 16 concurrent clients, against the same
clients served one after another: continuous batching across clients is what a server is for.

    python bench/bench_serve.py                                   # a 2-layer random model, 512 wide, on the CPU
    python bench/bench_serve.py --clients 1 4 16 --pages 2 --max-new-tokens 64 --hidden 512

Writes a seeded random checkpoint in the release layout (the tests' geometry at `--hidden` LLM width) and
one PDF per client, starts `vary serve` (one engine, `--batch-size`), then for each client count runs
the clients twice: all at once (each posts its job and follows its events), and one after another
(each waits for the previous job to finish). pages/s counts all pages over the time from the first
upload to the last `done`; time to first page is from a client's upload to its first page event. The
server's own counters (/healthz) give the rows per forward pass. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "serve")]


def run_client(url: str, pdf: Path, max_new_tokens: int, out: dict) -> None:
    import httpx

    with httpx.Client(timeout=3600) as client:
        started = time.perf_counter()
        job = client.post(f"{url}/v1/convert", files=[("file", (pdf.name, pdf.read_bytes()))],
                          data={"max_new_tokens": str(max_new_tokens)}).json()["job"]
        first = None
        with client.stream("GET", f"{url}/v1/jobs/{job}/events") as response:
            for line in response.iter_lines():
                if line == "event: page" and first is None:
                    first = time.perf_counter()
                if line == "event: done":
                    break
        out.update(started=started, first_page_s=first - started, done=time.perf_counter())


def measure(url: str, pdfs: list[Path], pages: int, max_new_tokens: int, together: bool) -> dict:
    import httpx

    before = httpx.get(f"{url}/healthz").json()
    results = [{} for _ in pdfs]
    if together:
        threads = [threading.Thread(target=run_client, args=(url, pdf, max_new_tokens, result))
                   for pdf, result in zip(pdfs, results)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for pdf, result in zip(pdfs, results):
            run_client(url, pdf, max_new_tokens, result)
    after = httpx.get(f"{url}/healthz").json()
    elapsed = max(r["done"] for r in results) - min(r["started"] for r in results)
    steps = after["decode_steps"] - before["decode_steps"]
    rows = after["rows_per_step"] * after["decode_steps"] - before["rows_per_step"] * before["decode_steps"]
    first = [r["first_page_s"] for r in results]
    return {"clients": len(pdfs), "mode": "concurrent" if together else "one after another",
            "pages": len(pdfs) * pages, "seconds": round(elapsed, 2),
            "pages_per_s": round(len(pdfs) * pages / elapsed, 3),
            "first_page_s_median": round(statistics.median(first), 2), "first_page_s_max": round(max(first), 2),
            "rows_per_forward_pass": round(rows / steps, 2) if steps else 0.0,
            "shared_steps": after["shared_steps"] - before["shared_steps"], "forward_passes": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--pages", type=int, default=2, help="pages per client's document")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="the server's OMP_NUM_THREADS (1: no oversubscription "
                        "on a shared machine)")
    args = parser.parse_args()

    from conftest import make_checkpoint, tiny_config  # tests/conftest.py
    from live_server import LiveServer  # tests/serve/live_server.py
    from serve_fixtures import pdf_bytes  # tests/serve/serve_fixtures.py

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = make_checkpoint(tmp / "model", tiny_config(hidden=args.hidden))
        pdfs = []
        for i in range(max(args.clients)):
            pdfs.append(tmp / f"client{i}.pdf")
            pdfs[-1].write_bytes(pdf_bytes(args.pages, shade=3 * i))
        with LiveServer("--model", str(checkpoint), "--device", "cpu", "--batch-size", str(args.batch_size),
                        "--max-new-tokens", str(args.max_new_tokens), "--jobs-dir", str(tmp / "jobs"),
                        env={"OMP_NUM_THREADS": str(args.threads)}) as server:
            measure(server.url, pdfs[:1], args.pages, args.max_new_tokens, True)  # warm-up
            for count in args.clients:
                rows = [measure(server.url, pdfs[:count], args.pages, args.max_new_tokens, together)
                        for together in (True, False)]
                rows[0]["speedup_vs_one_after_another"] = round(rows[0]["pages_per_s"] / rows[1]["pages_per_s"], 2)
                for row in rows:
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
