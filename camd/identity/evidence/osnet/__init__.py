"""OSNet body re-ID backbone for user-supplied torchreid weights (docs/identity.md, "OSNet").

- `network`: the architecture in torch (prepare time only);
- `convert`: checkpoint -> ONNX, checked against torch (prepare time only);
- `prepare`: download with checksum (or a local file), convert once, cache by the weights' sha256;
- `embedder`: `OSNetEmbedder`, the run-time body embedder (onnxruntime, no torch).
"""

EMBEDDING_DIM = 512  # every torchreid OSNet variant ends in a 512-wide fc layer
INPUT_HW = (256, 128)  # height, width: torchreid's re-ID training size
