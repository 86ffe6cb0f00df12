"""The package's process class, under the name test modules and benchmarks have long imported it by."""

from webhook.tools.processes import Process, free_port

__all__ = ["Process", "free_port"]
