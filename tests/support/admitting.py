"""``admit`` as most unit tests call it: a request and a resolver in, the response out.

The settings are those the resolver was built with; a test about the fields' resolution
results calls ``admit`` itself and reads ``Admission.results``.
"""

from __future__ import annotations

from typing import Any, cast

from webhook.admission.decision import admit
from webhook.admission.review import AdmissionRequest, Response
from webhook.registry.resolver import Resolver


async def response_to(request: dict[str, Any], *, resolver: Resolver) -> Response:
    return (await admit(cast(AdmissionRequest, request), resolver=resolver, settings=resolver.settings)).response
