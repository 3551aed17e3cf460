"""worker.py: an engine thread survives a failing engine and a page that cannot be prepared."""

from serve_fixtures import wait_for
from fake_engine import FakeBackend, FakeEngine
from PIL import Image

from vary_cli.serve.queue import FairQueue, PageKey, PageTask
from vary_cli.serve.worker import Stats, Worker


def task(group, page, results, render=None):
    image = Image.new("RGB", (10 + page, 10), "white")
    return PageTask(PageKey(group, 0, page), render or (lambda: image), "ocr", 50, source=f"{group}.png",
                    page=page, done=lambda result: results.append((group, page, result)))


class BrokenOnce(FakeBackend):
    """Its first engine raises on the first decode step (a lost device); later engines work."""

    def new_engine(self, on_token):
        engine = super().new_engine(on_token)
        if len(self.engines) == 1:
            def step():
                raise RuntimeError("CUDA error: device lost")
            engine.step = step
        return engine


def test_a_failing_engine_fails_its_pages_and_a_new_one_serves_the_rest():
    pages, results = FairQueue(100), []
    worker = Worker("engine-0", BrokenOnce(batch_size=2), pages, Stats())
    worker.start()
    try:
        pages.add("a", [task("a", 1, results), task("a", 2, results)])
        wait_for(lambda: len(results) == 2)
        # The pages in the broken engine fail with its error; one still being prepared goes to the new engine.
        failed = [r for _, _, r in results if r.finish_reason == "error"]
        assert failed and all("device lost" in r.error for r in failed)
        pages.add("b", [task("b", 1, results)])
        wait_for(lambda: len(results) == 3)
        assert results[2][2].finish_reason == "stop" and results[2][2].text.startswith("ocr 11x10")
        assert isinstance(worker.engine, FakeEngine) and len(worker.backend.engines) == 2
    finally:
        worker.stop()


def test_a_page_that_cannot_be_prepared_fails_alone():
    pages, results = FairQueue(100), []

    class Picky(FakeBackend):
        def request(self, task):
            if task.key.page == 2:
                raise ValueError("cannot resize this page")
            return super().request(task)

    worker = Worker("engine-0", Picky(batch_size=4), pages, stats := Stats())
    worker.start()
    try:
        pages.add("a", [task("a", n, results) for n in (1, 2, 3)])
        wait_for(lambda: len(results) == 3)
        reasons = {page: r.finish_reason for _, page, r in results}
        assert reasons == {1: "stop", 2: "error", 3: "stop"}
        assert stats.snapshot()["failed_pages"] == 1 and stats.pages_per_second() > 0
    finally:
        worker.stop()


def test_cancel_drops_queued_preparing_and_decoding_pages():
    pages, results = FairQueue(100), []
    worker = Worker("engine-0", FakeBackend(batch_size=2, step_seconds=0.02), pages, stats := Stats())
    worker.start()
    try:
        pages.add("a", [task("a", n, results) for n in range(1, 9)])
        wait_for(lambda: stats.active == 2)
        pages.cancel("a")
        worker.cancel("a")
        wait_for(lambda: stats.active == 0 and not worker._preparing)
        assert len(results) < 8 and worker.engine.idle
    finally:
        worker.stop()
