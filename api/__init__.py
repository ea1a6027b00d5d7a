"""The HTTP API and web gallery behind `pixseek serve` (FastAPI over the CLI's own code paths).

app.py           create_app(): routes, auth, body-size limit, JSON errors, OpenAPI, the web page
routes_search.py /health, /collections, /search, /images/{collection}/{point_id}[/thumbnail]
routes_jobs.py   /jobs (generative search): submit, status, result, cancel, generated images
jobs.py          the job backends: Celery (PIXSEEK_BROKER_URL set) or threads in this process
uploads.py       example images uploaded with a search, checked and kept in a private temp dir
images.py        image and thumbnail bytes, read only from a stored point's payload
schemas.py       request and response models (the OpenAPI document is generated from them)
errors.py        every error is {"detail": "one line"} with the right status code
static/          the web page (plain HTML/JS/CSS, no CDN)
"""
