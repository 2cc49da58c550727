"""Building camd's run-time model files, once, at prepare time (`camd models prepare`).

Torch lives here only (the `prepare` extra): MobileNetV2 ImageNet weights -> an ONNX feature extractor
(mobilenet.py), and torchreid OSNet checkpoints -> an ONNX body embedder (osnet_network.py, the
architecture; osnet_convert.py, checkpoint -> ONNX checked against torch; osnet.py, download or local
file, checksum, convert once, cache). The daemon runs the ONNX files with onnxruntime and never imports
torch.
"""
