"""The API's documentation pages (Swagger UI at /docs, ReDoc at /redoc), served offline.

FastAPI's own /docs loads Swagger UI from a CDN: a blank page without internet. Here the
pages load the scripts and styles that the ``fastapi-offline`` package ships (a PyPI
package, installed with the ``[serve]`` extra) from our own ``/static/docs/`` route.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS_STATIC = "/static/docs"
DOCS_PATHS = ("/docs", "/redoc")
# The docs pages run an inline start-up script and inline styles (FastAPI's HTML); ReDoc
# runs its search in a blob: worker. Still nothing from another origin.
DOCS_POLICY = (b"content-security-policy",
               b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
               b"img-src 'self' data: blob:; worker-src 'self' blob:; font-src 'self' data:; object-src 'none'; "
               b"base-uri 'none'; frame-ancestors 'none'")


def assets_folder() -> Path:
    """The folder of Swagger UI's and ReDoc's files inside the installed ``fastapi-offline``.

    Raises:
        RuntimeError: the package is missing (install the ``[serve]`` extra).
    """
    spec = importlib.util.find_spec("fastapi_offline")  # found, not imported: its __init__ builds an app class
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError('the API docs need fastapi-offline: pip install "similar-images[serve]"')
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def install_docs(app) -> None:
    """Add /docs and /redoc to ``app`` (made with ``docs_url=None, redoc_url=None``)."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_STATIC, StaticFiles(directory=assets_folder()), name="docs-static")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui():
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{title} - API",
                                   swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_STATIC}/favicon.png", oauth2_redirect_url=None)

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{title} - API reference",
                              redoc_js_url=f"{DOCS_STATIC}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_STATIC}/favicon.png", with_google_fonts=False)
