"""`vary serve`: one loaded model, many clients, sharing one continuous batch.

HTTP handlers (app.py, routes_*.py) only validate input, queue pages and read results; the pages of every
job and request go through a fair round-robin queue (queue.py) to engine threads (worker.py) that each
own a model and the one decode engine. Jobs and their finished pages live on disk (jobs.py, with
convert/output.py's PageStore), so a restarted server finishes what it had started. uploads.py streams
multipart bodies under a size limit, auth.py checks bearer tokens, events.py streams server-sent events,
chat.py speaks OpenAI's chat-completions shape and view.py renders a page for the web page (static/).
"""
