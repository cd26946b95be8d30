"""mmsupport: a multimodal customer-support and shopping assistant.

The package is flat, one module per concept: ``config`` (settings), ``errors``, ``images`` (safe decoding),
``catalog`` (LanceDB table), ``retrieval`` (search), ``vlm`` (model backends), ``agent`` (the grounded chat loop),
``labeling``, ``finetune``, ``evaluation`` and ``ui`` (Gradio). ``python -m mmsupport --help`` lists the commands.
"""

__version__ = "0.1.0"
