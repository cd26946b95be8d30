"""The Gradio app: multimodal chat over the catalog, retrieved-item cards, feedback, catalog admin and a named API.

The app is a thin shell over the same library calls as the CLI: :class:`mmsupport.agent.Agent` answers,
:class:`mmsupport.catalog.Catalog` searches and ingests. Errors raised on purpose (:mod:`mmsupport.errors`) become
``gr.Error`` messages at the boundary; the app keeps serving.

- :mod:`~mmsupport.app.layout`: the page, components and wiring only (:func:`build_demo`)
- :mod:`~mmsupport.app.chat`: the turn handlers, callable without a browser
- :mod:`~mmsupport.app.api`: ``/chat`` and ``/search`` for scripts
- :mod:`~mmsupport.app.mcp`: the MCP tools (``search_catalog``, ``get_item``, ``ask_support``) with ``settings.mcp``
- :mod:`~mmsupport.app.admin`: the catalog admin tab
- :mod:`~mmsupport.app.tickets`: the shopper's side of a hand-off (Talk to a person, staff replies), ``/handoff``
- :mod:`~mmsupport.app.desk`: the support desk tab for staff
- :mod:`~mmsupport.app.resources`: the catalog and model, loaded in the background
- :mod:`~mmsupport.app.views`: cards, item details, citation links, escaping

>>> demo = build_demo(load_settings(db_dir="/tmp/shop"))   # doctest: +SKIP
>>> demo.launch()                                         # doctest: +SKIP
"""

from mmsupport.app.layout import SupportApp, build_demo

__all__ = ["SupportApp", "build_demo"]
