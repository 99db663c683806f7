"""Layer 2: faces in pixels. :class:`Face`, the one MTCNN cascade, the detector and its
settings, alignment onto a model's template, and MTCNN's ONNX (float32/int8) networks."""
