"""queue.py: pages are served round-robin between jobs, under one limit over all of them."""

import threading
import time

import pytest

from vary_cli.serve.http import ApiError
from vary_cli.serve.queue import FairQueue, PageKey, PageTask


def tasks(group, n):
    return [PageTask(PageKey(group, 0, i + 1), render=lambda: None, prompt="ocr", max_new_tokens=4,
                     source=f"{group}.pdf", page=i + 1, done=lambda result: None) for i in range(n)]


def drain(queue):
    out = []
    while (task := queue.pop()) is not None:
        out.append((task.key.group, task.key.page))
    return out


def test_round_robin_between_jobs_not_first_come_first_served():
    queue = FairQueue(limit=100)
    queue.add("big", tasks("big", 4))
    queue.add("small", tasks("small", 1))
    queue.add("mid", tasks("mid", 2))
    assert drain(queue) == [("big", 1), ("small", 1), ("mid", 1), ("big", 2), ("mid", 2), ("big", 3), ("big", 4)]
    assert len(queue) == 0


def test_a_late_job_joins_the_rotation_within_one_round():
    queue = FairQueue(limit=100)
    queue.add("a", tasks("a", 3))
    queue.add("c", tasks("c", 1))
    assert queue.pop().key == PageKey("a", 0, 1)
    queue.add("b", tasks("b", 2))  # joins after the groups already in the round: c, then a
    assert drain(queue) == [("c", 1), ("a", 2), ("b", 1), ("a", 3), ("b", 2)]


def test_the_limit_counts_every_job_and_cancel_frees_it():
    queue = FairQueue(limit=5)
    queue.add("a", tasks("a", 3))
    with pytest.raises(ApiError) as caught:
        queue.add("b", tasks("b", 3))
    assert caught.value.status == 429 and caught.value.headers["Retry-After"]
    assert queue.pending("b") == 0 and len(queue) == 3
    assert queue.cancel("a") == 3 and len(queue) == 0
    queue.add("b", tasks("b", 5))
    assert queue.cancel("nobody") == 0


def test_wait_returns_when_a_page_arrives():
    queue = FairQueue(limit=5)
    started = time.perf_counter()
    threading.Timer(0.1, lambda: queue.add("a", tasks("a", 1))).start()
    queue.wait(timeout=5)
    assert time.perf_counter() - started < 4 and len(queue) == 1
