"""On-device inference for edgeslim bundles: numpy + one backend + the modality's input
preparation (a tokenizer, image preprocessing with Pillow, or an audio front end in numpy).

    from edgeslim.runtime import load
    encoder = load("runs/.../bundles/ort-int8-dynamic")
    vectors = encoder.encode(["a sentence", "another"], batch_size=32)  # (2, 384) float32
    # image bundles: encoder.encode_images([...]); audio bundles: encoder.encode_audio([...])

Never imports torch, transformers or tensorflow (tests/test_runtime.py checks sys.modules).
"""

from edgeslim.errors import BackendError, BundleError, InputError
from edgeslim.runtime.backends import available_backends
from edgeslim.runtime.bundle import BUNDLE_FORMAT, MANIFEST_NAME, read_manifest, sha256_file, verify_files
from edgeslim.runtime.encoder import Encoder, load
from edgeslim.runtime.modalities import MODALITIES, get_modality, register_modality
from edgeslim.runtime.modality import RuntimeModality

__all__ = [
    "BUNDLE_FORMAT",
    "MANIFEST_NAME",
    "BackendError",
    "BundleError",
    "Encoder",
    "InputError",
    "MODALITIES",
    "RuntimeModality",
    "available_backends",
    "get_modality",
    "load",
    "read_manifest",
    "register_modality",
    "sha256_file",
    "verify_files",
]
