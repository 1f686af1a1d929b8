"""The interactive API documentation, /api/v1/docs: Swagger UI served by the application
itself, so that the page works where the internet is not reachable.

FastAPI's own docs page loads Swagger UI from a CDN (and its icon from FastAPI's site):
offline it is a blank page. Here the page and its assets come from the application. The
assets are those of the `fastapi-swagger` package (Swagger UI's release bundle, which that
package follows release by release), installed from the lock like every other dependency.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

# The package and file names of Swagger UI's assets, with the types they are served as.
SWAGGER_UI_PACKAGE = "fastapi_swagger.resources"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
# Swagger UI would otherwise send the schema's URL to validator.swagger.io and show the
# verdict as an image from there.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None}


class Asset:
    """One file served with an ETag: browsers keep it and ask again with If-None-Match,
    and get a 304 while it is unchanged (after an upgrade, the new file)."""

    def __init__(self, content: bytes, media_type: str) -> None:
        self.content = content
        self.media_type = media_type
        self.etag = f'"{hashlib.sha256(content).hexdigest()[:32]}"'

    def response(self, request: Request) -> Response:
        headers = {"ETag": self.etag, "Cache-Control": "no-cache"}
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(self.content, media_type=self.media_type, headers=headers)


def add_asset_routes(
    app: FastAPI,
    prefix: str,
    assets: Mapping[str, Asset],
    name: str,
    finish: Callable[[Response], Response] = lambda response: response,
) -> None:
    """A GET route for each asset at `prefix`/<file>, named `name`_<file>, its response
    passed through `finish` (the dashboard adds its security headers)."""

    def serve(asset: Asset) -> Callable[[Request], Awaitable[Response]]:
        async def asset_file(request: Request) -> Response:
            return finish(asset.response(request))

        return asset_file

    for file, asset in assets.items():
        app.add_api_route(
            f"{prefix}/{file}", serve(asset), methods=["GET"], include_in_schema=False,
            name=f"{name}_{file}",
        )  # fmt: skip


def load_assets() -> dict[str, Asset]:
    """Swagger UI's files, read once; fails at once if the package is not installed."""
    files = resources.files(SWAGGER_UI_PACKAGE)
    return {name: Asset(files.joinpath(name).read_bytes(), type_) for name, type_ in ASSETS.items()}


def install_docs(app: FastAPI, docs_url: str) -> None:
    """Serves the docs page at `docs_url` and its assets under it (`docs_url`/<file>), for
    `app`, whose FastAPI docs_url and swagger_ui_oauth2_redirect_url must be None."""
    assets = load_assets()
    assert app.openapi_url is not None

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a path prefix, root_path is that prefix.
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{docs_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{docs_url}/swagger-ui.css",
            swagger_favicon_url=f"{root}{docs_url}/favicon-32x32.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    add_asset_routes(app, docs_url, assets, "docs")
