"""The Celery + Redis side of bench/jobs: a task doing the text kind's work,
and a client that submits N of them and waits for their results.

Runs in the venv bench/jobs makes (target/bench-venv: celery, redis); the
worker as `celery -A celery_text worker ...` with this directory as its
working directory, the client as `python celery_text.py submit ...`.
BENCH_BROKER and BENCH_BACKEND are the Redis URLs of the broker and the
result backend.

The task reproduces worker/src/kinds/text.rs in Python, rule for rule:
lines as Rust's `str::lines` counts them (a final piece after the last
newline counts only when it is not empty; `\\r\\n` is one line end), words as
runs of non-whitespace, characters as code points, the SHA-256 of the bytes,
and the ten most frequent words (runs of letters, digits and inner
apostrophes, lower-cased; ties alphabetical), answered as compact JSON.
"""

import datetime
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter

from celery import Celery

TOP_WORDS = 10
# Anything but a letter, a digit or an apostrophe ends a word. `\w` also
# matches `_`, which Rust's `char::is_alphanumeric` does not: split on it.
NOT_WORD = re.compile(r"[^\w']|_")

app = Celery(
    "celery_text",
    broker=os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("BENCH_BACKEND", "redis://127.0.0.1:6379/1"),
)
# Celery's defaults, written out so the report can say what ran: prefetch 4
# per process, early acks, JSON; results kept an hour.
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=4,
    task_acks_late=False,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
)


def analyze(data):
    """The statistics of UTF-8 `data`, as the text worker computes them."""
    text = data.decode("utf-8")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    freq = Counter()
    for token in NOT_WORD.split(text):
        word = token.strip("'")
        if word:
            freq[word.lower()] += 1
    top = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_WORDS]
    return {
        "lines": len(lines),
        "words": len(text.split()),
        "characters": len(text),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "top_words": [{"word": w, "count": c} for w, c in top],
    }


@app.task(name="bench.text")
def text_stats(text, created_ms):
    """One job: the statistics of `text`, with the job's times (epoch ms)."""
    started_ms = time.time() * 1000
    result = json.dumps(analyze(text.encode("utf-8")), separators=(",", ":"), ensure_ascii=False)
    return {"created_ms": created_ms, "started_ms": started_ms, "ran_ms": time.time() * 1000, "result": result}


def wait_results(backend_url, ids, deadline_s):
    """{task id: stored meta} of the tasks done before the deadline, read
    straight from the result backend's keys, once a second."""
    import redis

    r = redis.Redis.from_url(backend_url)
    metas = {}
    end = time.monotonic() + deadline_s
    while len(metas) < len(ids) and time.monotonic() < end:
        missing = [i for i in ids if i not in metas]
        for at in range(0, len(missing), 2000):
            chunk = missing[at : at + 2000]
            for tid, raw in zip(chunk, r.mget(["celery-task-meta-" + t for t in chunk])):
                if raw:
                    metas[tid] = json.loads(raw)
        if len(metas) < len(ids):
            time.sleep(1.0)
    return metas


def submit(n, body_file, out_file, deadline_s):
    """Submits n tasks as fast as one client can, waits for them, and
    writes one row per task to out_file: created, started, ran and done
    (the result backend's date_done) in epoch ms, and the state."""
    with open(body_file, encoding="utf-8") as f:
        body = f.read()
    ids = []
    t0 = time.time()
    for _ in range(n):
        ids.append(text_stats.apply_async((body, time.time() * 1000)).id)
    t1 = time.time()
    metas = wait_results(app.conf.result_backend, ids, deadline_s)
    rows = []
    for tid in ids:
        m = metas.get(tid)
        if m is None:
            rows.append({"state": "missing"})
            continue
        res = m.get("result") if m.get("status") == "SUCCESS" else None
        done = datetime.datetime.fromisoformat(m["date_done"])
        if done.tzinfo is None:
            done = done.replace(tzinfo=datetime.timezone.utc)
        row = {"state": m.get("status", "?"), "done_ms": done.timestamp() * 1000}
        if isinstance(res, dict):
            row.update(created_ms=res["created_ms"], started_ms=res["started_ms"], ran_ms=res["ran_ms"])
        rows.append(row)
    with open(out_file, "w") as f:
        json.dump({"submit_s": t1 - t0, "rows": rows}, f)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "submit":
        submit(int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]))
    elif len(sys.argv) == 3 and sys.argv[1] == "analyze":
        with open(sys.argv[2], "rb") as f:
            print(json.dumps(analyze(f.read()), separators=(",", ":"), ensure_ascii=False))
    else:
        sys.exit("usage: celery_text.py submit N BODY_FILE OUT_FILE DEADLINE_S | analyze FILE")
