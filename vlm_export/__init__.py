"""vlm-export: split vision-language models into ONNX graphs and run them fast without torch."""

__version__ = "0.1.0"
