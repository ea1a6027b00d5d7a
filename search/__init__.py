"""Search stage: text, image, composed and multi-example queries with payload filters.

`search.engine.run_search` is the one code path behind `pixseek search`, the worker and the HTTP
API. Modules: query (terms and their syntax), filters (the --where language), text_encoder
(prompt ensembling and the embedding cache), engine, render (table, JSON lines, HTML), cli.
Nothing heavy is imported here, so importing a submodule stays cheap.
"""
