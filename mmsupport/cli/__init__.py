"""One module per ``python -m mmsupport`` command: ``add_arguments(parser)`` and ``run(args) -> int``."""
