"""Build-time generators: code that writes committed files (manifests) and never runs in a server."""
