"""Prometheus metrics, defined once per process (plain prometheus-client)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_FAST = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# The webhook's
ADMISSIONS = Histogram(
    "modelpin_admission_seconds",
    "Time to answer one AdmissionReview, by outcome (its _count counts decisions)",
    ["outcome"],  # patched, unchanged, denied, skipped, bad_request, internal_error
    buckets=_FAST,
)
RESOLUTIONS = Counter(
    "modelpin_resolutions_total",
    "Template fields, by how admission settled them",
    ["result"],  # resolved, recorded, paused, stale, not_found, unavailable, invalid, policy
)
CACHE = Counter(
    "modelpin_cache_total",
    "Resolution cache lookups: hit, miss, bypass (a fresh entry older than the object's refresh token), "
    "joined (a miss that waited on a lookup already in flight), not_found (a recent 'no such model, "
    "alias or version' answered again without asking the registry)",
    ["result"],
)
REGISTRY_LATENCY = Histogram(
    "modelpin_registry_request_seconds",
    "Latency of registry calls, by registry and resource",
    ["registry", "operation"],
    buckets=_FAST,
)
REGISTRY_ERRORS = Counter(
    "modelpin_registry_errors_total",
    "Failed registry calls, by kind: timeout, connection, server_error, refused_credentials, bad_response, "
    "unexpected; not_found and rejected are answers, and do not count toward the circuit",
    ["registry", "kind"],
)
REGISTRY_LOOKUPS = Counter(
    "modelpin_registry_lookups_total",
    "Resolutions that went to the registry (one per reference, however many calls it took)",
    ["registry"],
)
REGISTRY_WAITING = Gauge(
    "modelpin_registry_lookups_waiting",
    "Lookups waiting for one of the registry's max_concurrent_lookups slots",
    ["registry"],
)
REGISTRY_WAIT = Histogram(
    "modelpin_registry_lookup_wait_seconds",
    "Time a lookup waited for a slot before its first registry call (waiting is never a registry failure)",
    ["registry"],
    buckets=_FAST,
)
REGISTRY_ABANDONED = Counter(
    "modelpin_registry_lookups_abandoned_total",
    "Lookups dropped while waiting for a slot, because every review waiting on them had passed its deadline",
    ["registry"],
)
REGISTRY_UP = Gauge("modelpin_registry_up", "1 while the registry's circuit is closed, else 0", ["registry"])
REGISTRY_CIRCUIT = Gauge(
    "modelpin_registry_circuit_state", "The registry's circuit breaker: 0 closed, 1 open, 2 half-open", ["registry"]
)
REGISTRY_CIRCUIT_OPENS = Counter(
    "modelpin_registry_circuit_opens_total",
    "Times the registry's circuit opened (or reopened after a probe)",
    ["registry"],
)
REGISTRY_SKIPPED = Counter(
    "modelpin_registry_skipped_total",
    "Lookups answered from the cache or refused without calling the registry, because its circuit was open",
    ["registry"],
)
CERT_RELOADS = Counter("modelpin_cert_reloads_total", "Serving certificate reloads", ["result"])
CERT_EXPIRY = Gauge(
    "modelpin_certificate_expiry_timestamp_seconds",
    "notAfter of the serving certificate in use, in seconds since the epoch",
)
READY = Gauge("modelpin_ready", "1 when configuration and certificates are loaded")

# Children bound once, which also exports every known label at zero from the start. Admission
# touches these several times per review, and ``labels()`` takes a lock and hashes on every call
# (1.6-2.1 us against 0.5-0.9 us per update, measured in tests/benchmarks/profile_decision.py).
ADMISSION_OUTCOME = {
    o: ADMISSIONS.labels(o) for o in ("patched", "unchanged", "denied", "skipped", "bad_request", "internal_error")
}
RESOLUTION_RESULT = {
    r: RESOLUTIONS.labels(r)
    for r in ("resolved", "recorded", "paused", "stale", "not_found", "unavailable", "invalid", "policy")
}
CACHE_RESULT = {r: CACHE.labels(r) for r in ("hit", "miss", "bypass", "joined", "not_found")}

# The reconciler's
TOUCHES = Counter("modelpin_reconciler_touches_total", "Objects touched for re-admission", ["result"])
LAG = Histogram(
    "modelpin_reconciler_propagation_seconds",
    "From the touch decision to the object re-admitted with a new version",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
POLL = Histogram("modelpin_reconciler_poll_seconds", "Duration of one full compare")
INDEX_SIZE = Gauge("modelpin_reconciler_index_objects", "Managed objects in the index")
LEADER = Gauge("modelpin_reconciler_leader", "1 while this replica holds the lease")
SYNCED = Gauge(
    "modelpin_reconciler_synced", "1 while this replica leads and has listed and compared every kind, else 0"
)
LEADERSHIP = Counter(
    "modelpin_reconciler_leadership_transitions_total", "Leadership gained, lost or released", ["change"]
)
APISERVER_ERRORS = Counter(
    "modelpin_reconciler_apiserver_errors_total",
    "Failed apiserver calls, by operation and reason (HTTP status, connection or timeout)",
    ["operation", "reason"],
)
POLL_CHANGED = Counter("modelpin_reconciler_poll_changed_models_total", "Models a poll found changed")
DELIVERIES = Counter("modelpin_reconciler_mlflow_deliveries_total", "MLflow webhook deliveries", ["result"])
# The rollout picture ``modelpin status`` shows, from the leader's index and its last compare
OBJECTS = Gauge(
    "modelpin_objects",
    "Template fields of managed objects by state, as modelpin status names them: current, behind, held, paused, "
    "pinned, gated, unresolvable (set by the leading reconciler; a field not yet compared is not counted)",
    ["state"],
)
# the states of webhook/reconcile/states.py, exported at zero from the start
OBJECT_STATE = {
    s: OBJECTS.labels(s)
    for s in ("paused", "rolled-back", "held", "rolling-out", "pinned", "unresolvable", "gated", "behind", "current")
}
VERSIONS_RUNNING = Gauge(
    "modelpin_model_versions_running",
    "Managed objects running each model version (set by the leading reconciler; series of versions no "
    "longer running are dropped)",
    ["registry", "model", "version"],
)
# Progressive rollouts (the leading reconciler's)
ROLLOUTS = Gauge(
    "modelpin_rollouts",
    "Objects by the phase of their rollout (modelpin.io/rollout): progressing, paused, promoted, rolled-back, "
    "aborted; objects keep their last phase until the next rollout",
    ["phase"],
)
ROLLOUT_PHASE = {p: ROLLOUTS.labels(p) for p in ("progressing", "paused", "promoted", "rolled-back", "aborted")}
ROLLOUT_RESULT_TOTAL = Counter(
    "modelpin_rollout_results_total",
    "Rollouts ended or stopped, by result: promoted, rolled-back (analysis failed), aborted (by an operator), "
    "paused-unreachable (analysis could not run)",
    ["result"],
)
ROLLOUT_RESULTS = {
    r: ROLLOUT_RESULT_TOTAL.labels(r) for r in ("promoted", "rolled-back", "aborted", "paused-unreachable")
}
