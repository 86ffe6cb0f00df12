"""Loaded only into the test ``mlflow server`` process (via PYTHONPATH).

MLflow delivers webhooks with ``trust_env = False``, so REQUESTS_CA_BUNDLE is
ignored and requests verifies against certifi's bundle. To deliver to a
reconciler whose certificate comes from the test CA, this points certifi at a
bundle holding certifi's roots plus that CA, before requests is imported.
Verification stays on; only the trusted set grows.
"""

import os
import tempfile

_extra = os.environ.get("MODELPIN_TEST_EXTRA_CA")
if _extra:
    import certifi

    _bundle = os.path.join(tempfile.mkdtemp(prefix="modelpin-ca-"), "bundle.pem")
    with open(certifi.where(), "rb") as roots, open(_extra, "rb") as extra, open(_bundle, "wb") as out:
        out.write(roots.read() + b"\n" + extra.read())
    certifi.where = lambda: _bundle
