"""Generative retrieval as queued jobs: a Celery app on Redis, GPU workers running diffusers.

spec.py    the job's parameters (JSON-safe, validated on both ends)
job.py     generate -> embed -> search, shared by the worker and the in-process path
images.py  the on-disk cache of generated images
app.py     the Celery app and its settings for long GPU tasks
tasks.py   the task: progress states, cancel, retries for transient faults only
client.py  submit / status / result / cancel / wait
render.py  progress display, text summary, HTML page
cli.py     `pixseek jobs ...`, `pixseek worker`, and `search --generate`'s runner
"""
