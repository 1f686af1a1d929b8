"""The interactive docs, /api/v1/docs, work without the internet: the page and everything it
loads (Swagger UI's script, style sheet and icon, and the OpenAPI document) come from the
application itself, and the page names no other host."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from erc8004_backend.api.app import open_pool
from tests.api.conftest import ApiClient, api_settings, app_on, client_of

# Nothing here reaches the database: the pool is never opened.
UNUSED_DATABASE = "postgresql://127.0.0.1/unused"
ABSOLUTE_URL = re.compile(r"""https?://[^\s"'<>()\\]+""")
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]*)|@import\s+['"]([^'"]*)""")


@pytest.fixture
async def docs_client() -> AsyncIterator[ApiClient]:
    with app_on(api_settings(UNUSED_DATABASE), open_pool(UNUSED_DATABASE)) as app:
        async with client_of(app) as client:
            yield client


class References(HTMLParser):
    """What a page makes the browser load: scripts, style sheets and icons, and images."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag in ("script", "img", "iframe") and named.get("src"):
            self.found.append(str(named["src"]))
        if tag == "link" and named.get("href"):
            self.found.append(str(named["href"]))
        self._in_inline_script = tag == "script" and not named.get("src")

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts.append(data)


def loaded_by(page: str) -> tuple[list[str], str]:
    """The references of `page` and the OpenAPI URL its Swagger UI loads."""
    references = References()
    references.feed(page)
    script = "\n".join(references.inline_scripts)
    spec = re.search(r"""\burl:\s*['"]([^'"]+)['"]""", script)
    assert spec is not None, f"no OpenAPI URL in the page's script: {script[:500]}"
    return references.found, spec.group(1)


def external_urls(text: str, own_host: str) -> list[str]:
    """Absolute URLs in `text` to a host other than `own_host`."""
    return [url for url in ABSOLUTE_URL.findall(text) if urlsplit(url).netloc != own_host]


async def test_the_docs_page_and_all_it_loads_come_from_the_application(
    docs_client: ApiClient,
) -> None:
    page = await docs_client.get("/docs")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    own_host = page.url.netloc.decode()
    assert external_urls(page.text, own_host) == []

    references, openapi_url = loaded_by(page.text)
    expected_types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    assert sorted(urlsplit(url).path.rsplit(".", 1)[-1] for url in references) == [
        "css", "js", "png",
    ]  # fmt: skip
    for reference in references:
        url = urljoin(str(page.url), reference)
        assert urlsplit(url).netloc == own_host, reference
        asset = await docs_client.get(url)
        assert asset.status_code == 200, (reference, asset.status_code)
        suffix = "." + urlsplit(url).path.rsplit(".", 1)[-1]
        assert asset.headers["content-type"].split(";")[0] == expected_types[suffix], reference
        assert len(asset.content) > 500, reference  # the asset itself, not a stand-in
        if suffix == ".css":
            # A style sheet's url(...) and @import load too: Swagger UI's are data: URIs.
            for match in CSS_URL.finditer(asset.text):
                loaded = match.group(1) or match.group(2)
                if not loaded.startswith("data:"):
                    assert urlsplit(urljoin(url, loaded)).netloc == own_host, loaded

    spec = await docs_client.get(urljoin(str(page.url), openapi_url))
    assert spec.status_code == 200
    assert spec.headers["content-type"] == "application/json"
    assert spec.json()["info"]["title"] == "erc8004-backend"


async def test_the_swagger_ui_bundle_is_swagger_ui(docs_client: ApiClient) -> None:
    page = await docs_client.get("/docs")
    references, _ = loaded_by(page.text)
    (script,) = [url for url in references if url.endswith(".js")]
    bundle = await docs_client.get(urljoin(str(page.url), script))
    assert "SwaggerUIBundle" in bundle.text
    # Swagger UI 5 or later: the first to render OpenAPI 3.1, which FastAPI writes.
    version = re.search(r'PACKAGE_VERSION:"([0-9]+)\.', bundle.text)
    assert version is not None
    assert int(version.group(1)) >= 5
    # The page tells Swagger UI not to send the schema's URL to the public validator.
    assert '"validatorUrl": null' in page.text


async def test_assets_are_revalidated_not_downloaded_again(docs_client: ApiClient) -> None:
    page = await docs_client.get("/docs")
    references, _ = loaded_by(page.text)
    url = urljoin(str(page.url), next(url for url in references if url.endswith(".js")))
    first = await docs_client.get(url)
    etag = first.headers["etag"]
    again = await docs_client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert (await docs_client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200


async def test_redoc_and_the_oauth2_redirect_are_not_served(docs_client: ApiClient) -> None:
    # The API signs in with bearer tokens, not OAuth2 flows; ReDoc would load from a CDN.
    for path in ("/docs/oauth2-redirect", "/redoc"):
        assert (await docs_client.get(path)).status_code == 404, path
        assert (await docs_client.get(f"http://api.test{path}")).status_code == 404, path
