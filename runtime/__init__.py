"""On-device inference for edgeslim bundles: numpy + tokenizers + one backend.

    from edgeslim.runtime import load
    encoder = load("runs/.../bundles/ort-int8-dynamic")
    vectors = encoder.encode(["a sentence", "another"], batch_size=32)  # (2, 384) float32

Never imports torch, transformers or tensorflow (tests/test_runtime.py checks sys.modules).
"""

from edgeslim.errors import BackendError, BundleError, InputError
from edgeslim.runtime.backends import available_backends
from edgeslim.runtime.bundle import BUNDLE_FORMAT, MANIFEST_NAME, read_manifest, sha256_file, verify_files
from edgeslim.runtime.encoder import Encoder, load

__all__ = [
    "BUNDLE_FORMAT",
    "MANIFEST_NAME",
    "BackendError",
    "BundleError",
    "Encoder",
    "InputError",
    "available_backends",
    "load",
    "read_manifest",
    "sha256_file",
    "verify_files",
]
