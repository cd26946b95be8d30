"""mmsupport's web app: ``python app.py`` serves it (on Hugging Face Spaces too).

Settings come from ``MMSUPPORT_*`` environment variables (see README); ``GRADIO_SERVER_NAME`` and
``GRADIO_SERVER_PORT`` choose where it listens.
"""

from mmsupport.config import load_settings
from mmsupport.app import build_demo

demo = build_demo(load_settings())

if __name__ == "__main__":
    demo.launch()
