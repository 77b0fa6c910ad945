"""``infinitygan serve``: the infinite image as a web map (tile server + explorer page).

``tiles.py`` knows the tile grid and renders tiles in shared forwards; ``app.py`` is the HTTP
layer (Starlette: cache, bounded queue, batching worker); ``cli.py`` runs it on uvicorn;
``static/`` holds the page and Leaflet's files (from the npm registry, no CDN).
"""
