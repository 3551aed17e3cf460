"""The data engine behind `vary data`: PDFs, charts, natural images and detection boxes as `vary train` data.

One module per kind (pdf_pages.py with pdf_text.py, charts.py, negatives.py, detection.py), mix.py for
weighted mixes, and writer.py, the runner they share: items through a process pool, per-item seeds,
resume, shards, atomic data.jsonl and manifest.json. See Vary §3.2.2 and Vary-toy §3.1.
"""
