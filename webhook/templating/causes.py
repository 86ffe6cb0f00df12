"""Why a template could not be resolved, or a review not admitted.

One vocabulary for the admission answer, the reconciler's Events and
``modelpin render``; ``admission.review`` maps each cause to its HTTP status.
"""

from __future__ import annotations

from enum import StrEnum


class Cause(StrEnum):
    INVALID = "invalid"  # the request is wrong: a template that does not parse, an unknown profile
    NOT_FOUND = "not_found"  # the model, alias, stage or version does not exist
    POLICY = "policy"  # the namespace may not use this registry or model
    UNAVAILABLE = "unavailable"  # the registry cannot answer and nothing usable is cached
    INTERNAL = "internal"  # modelpin's own fault
