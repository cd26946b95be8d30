"""The app's MCP tools: ``search_catalog``, ``get_item`` and ``ask_support``, and nothing else.

With ``MMSUPPORT_MCP=true`` (or Gradio's ``GRADIO_MCP_SERVER=true``) the app launches Gradio's MCP server
(streamable HTTP at ``/gradio_api/mcp/``, SSE at ``/gradio_api/mcp/sse``). Gradio would make every public API
endpoint a tool, the scripts' ``/chat``, ``/feedback``, ``/handoff`` and ``/ticket`` included; :func:`keep_only_tools`
cuts its tool table down to the three endpoints registered here, so nothing else can be listed or called (admin,
support desk and page events are private endpoints and were never candidates).

Each tool answers with JSON text (Gradio would send a Python ``repr`` of a dict). The tools run through the same
handlers as the scripts' API (:class:`~mmsupport.app.api.Api`): the same checks, queue slots, A/B variants and
conversation log (channel ``api``). A photo for ``ask_support`` comes by URL (:mod:`mmsupport.image_url` guards the
fetch) and is then checked exactly like an upload.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr

from mmsupport.app import views
from mmsupport.app.api import SEARCH_CONCURRENCY, Api
from mmsupport.app.uploads import uploaded_file_url
from mmsupport.config import SearchMode
from mmsupport.errors import InvalidInput
from mmsupport.image_url import fetch_image_bytes
from mmsupport.images import sniff_format

#: The API endpoints Gradio's MCP server may offer as tools.
TOOL_ENDPOINTS = ("/search_catalog", "/get_item", "/ask_support")


def keep_only_tools(server) -> None:
    """Drop every tool but :data:`TOOL_ENDPOINTS` from a ``gradio.mcp.GradioMCPServer``: it lists and calls tools
    from this one table (``tool_to_endpoint``), so what is not in it can be neither listed nor called."""
    server.tool_to_endpoint = {name: endpoint for name, endpoint in server.tool_to_endpoint.items()
                               if endpoint in TOOL_ENDPOINTS}


class McpTools:
    """The three tools, over the scripts' :class:`~mmsupport.app.api.Api`."""

    def __init__(self, api: Api):
        self.api = api
        self.settings = api.settings

    def search_catalog(self, query: str, mode: SearchMode = "hybrid", k: int = 5, category: str = "") -> str:
        """Search the shop's catalog of products and support articles; best matches first.

        Args:
            query: What to look for, in plain words, e.g. "waterproof hiking boots" or "watch flashing red".
            mode: "hybrid" (default: keywords and meaning), "vector" (meaning only), "fts" (keywords only) or "image" (the words matched against the product pictures, where the catalog has image vectors).
            k: How many items to return, 1 to 50.
            category: Only items of this catalog category, e.g. "shoes"; empty for every category.
        Returns:
            JSON: a list of items, each with id, kind (product or article), title, text, category, colour, price and score.
        """
        return json.dumps(self.api.search(query, mode, k, category), ensure_ascii=False)

    def get_item(self, item_id: str) -> str:
        """Fetch one catalog item (a product or a support article) by its id, as search_catalog returns it.

        Args:
            item_id: The item's id, e.g. one from search_catalog's results or a citation in ask_support's answer.
        Returns:
            JSON: the item's id, kind, title, full text, category, colour, price and other attributes.
        """
        with views.ui_errors():
            if not (item_id or "").strip():
                raise InvalidInput("item_id is empty.", hint="Send an id that search_catalog returned.")
            item = self.api.chat.resources.wait_for_catalog().get(item_id.strip())
            if item is None:
                raise InvalidInput(f"There is no item with id {item_id.strip()!r}.",
                                   hint="Use an id that search_catalog returned.")
        return json.dumps(views.item_dict(item), ensure_ascii=False)

    def ask_support(self, question: str, image_url: str = "", session_id: str = "") -> str:
        """Ask the shop's support assistant one question, optionally about a photo; it answers from the catalog
        and support articles it retrieved and cites them as [id].

        Args:
            question: The customer's question, e.g. "My watch button is flashing red, what does that mean?".
            image_url: Optional photo: an http(s) URL of a public image, a data:image/...;base64 URL, or the URL this app returned for a file POSTed to /gradio_api/upload. PNG, JPEG, WebP or GIF.
            session_id: Optional id of an earlier ask_support call's session, to log this turn in the same session.
        Returns:
            JSON: answer, citations (item ids), items retrieved, no_match, session_id, turn_id and handoff (a ticket reference when a person was asked for).
        """
        with tempfile.TemporaryDirectory(prefix="mmsupport-mcp-") as folder:
            with views.ui_errors():
                image = self._image_file(image_url, Path(folder)) if (image_url or "").strip() else None
            result = self.api.chat_turn(question, image, session_id=session_id or None)
        result.pop("transcript", None)
        return json.dumps(result, ensure_ascii=False)

    def _image_file(self, url: str, folder: Path) -> str:
        """A local file for ``url``: the upload it names, or the fetched bytes (checked as uploads are later)."""
        url = url.strip()
        uploaded = uploaded_file_url(url)
        if uploaded is not None:
            return uploaded
        data = fetch_image_bytes(url, max_bytes=int(self.settings.max_upload_mb * 2**20),
                                 allow_private=self.settings.allow_private_urls)
        kind = sniff_format(data[:16])
        if kind is None:
            raise InvalidInput("The file at the image URL is not an image in a supported format.",
                               hint="Use a PNG, JPEG, WebP or GIF photo.")
        path = folder / f"photo.{kind.lower()}"
        path.write_bytes(data)
        return str(path)

    def register(self) -> None:
        """Add the three tools' endpoints to the Blocks being built (call inside its ``with`` block)."""
        gr.api(self.search_catalog, api_name="search_catalog", concurrency_id="search",
               concurrency_limit=SEARCH_CONCURRENCY)
        gr.api(self.get_item, api_name="get_item", concurrency_id="search", concurrency_limit=SEARCH_CONCURRENCY)
        gr.api(self.ask_support, api_name="ask_support", concurrency_id="turn")
