"""Every Prometheus metric the suite exports (docs/architecture.md §4). No per-contact labels."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

GRPC_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, regardless of success or failure.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Response latency of RPCs handled by the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS_APPENDED = Counter("crm_events_appended_total", "Events appended to the event store.")
APPEND_SECONDS = Histogram(
    "crm_append_seconds",
    "Latency of one append call to the event store.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
PROJECTION_POSITION = Gauge(
    "crm_projection_position", "Last global position a projection committed.", ["projection"]
)
PROJECTION_LAG_EVENTS = Gauge(
    "crm_projection_lag_events",
    "Events of the projection's kinds after its committed checkpoint (counted up to 1,000,000).",
    ["projection"],
)
PROJECTION_LAG_SECONDS = Gauge(
    "crm_projection_lag_seconds",
    "Age of the oldest event the projection has not committed yet; 0 when caught up. Measured "
    "from the store and the checkpoint table, so a dead or stuck runner shows as growing lag.",
    ["projection"],
)
WORKER_UP = Gauge(
    "crm_worker_up",
    "1 while a supervised worker (projection, reactor, timer) runs; 0 while it backs off.",
    ["worker"],
)
WORKER_RESTARTS = Counter(
    "crm_worker_restarts_total", "Times a supervised worker failed and was restarted.", ["worker"]
)
PARKED_EVENTS = Gauge(
    "crm_parked_events",
    "Events a projection parked after failing to apply them, as rows of projections.parked: "
    "measured with the lag, so it stays up until an operator resolves them.",
    ["projection"],
)
CHECKPOINTS_WRITTEN = Counter(
    "crm_checkpoints_written_total", "Signed checkpoints this process wrote (audit worker)."
)
CHECKPOINT_POSITION = Gauge(
    "crm_checkpoint_position", "Global position of the last checkpoint this process saw or wrote."
)
CHECKPOINT_TIME = Gauge(
    "crm_checkpoint_time_seconds",
    "When the last checkpoint this process saw or wrote was taken (Unix time): alert on its age.",
)
NOTIFICATIONS_SENT = Counter(
    "crm_notifications_sent_total", "Notification deliveries by outcome.", ["channel", "outcome"]
)
# The values of NOTIFICATIONS_SENT's ``outcome`` label; the alert rules and the dashboard
# (deploy/prometheus, deploy/grafana) key on them, and tests/deploy checks they use no other.
# sent: accepted by the next hop; failed: failed for good; retry: failed for now, tried again;
# suppressed: a decision skipped it because the channel is suppressed.
NOTIFICATION_OUTCOMES = ("sent", "failed", "retry", "suppressed")
NOTIFICATIONS_IN_DOUBT = Counter(
    "crm_notifications_in_doubt_resends_total",
    "Messages dispatched again after an attempt with no recorded outcome (same message id).",
    ["channel"],
)

# Hits on the notifications tracking endpoints (services/notifications/adapters/tracking_http.py):
# kind open, click, unsubscribe_page (GET /u), unsubscribe (POST /u); result recorded (an event
# appended), repeat (within the dedup window, or an unsubscription already standing), shown (the
# page), test (a test message's link: nothing to do), gone (the contact was erased: 410),
# invalid (a bad or forged token, an unknown link, a bad body: 4xx), unavailable (contacts
# away: 503).
NOTIFICATIONS_TRACKING = Counter(
    "crm_notifications_tracking_hits_total",
    "Hits on the notifications tracking endpoints by kind and result.",
    ["kind", "result"],
)
TRACKING_RESULTS = ("recorded", "repeat", "shown", "test", "gone", "invalid", "unavailable")
NOTIFICATIONS_INTAKE = Counter(
    "crm_notifications_intake_reports_total",
    "Bounce and complaint reports and SMS status callbacks taken in, by kind and outcome.",
    ["kind", "outcome"],
)
# kind: hard_bounce, soft_bounce, complaint, sms_delivered, sms_failed, sms_status (progress),
# request (a whole request refused or unavailable, whatever it held);
# outcome: recorded, already_recorded (a redelivery), suppressed (recorded or not, the channel
# is suppressed at contacts because of it), ignored (SMS progress), refused (a 4xx: bad
# signature or document, unknown message), unavailable (503: contacts away, retried).
NOTIFICATION_INTAKE_OUTCOMES = (
    "recorded",
    "already_recorded",
    "suppressed",
    "ignored",
    "refused",
    "unavailable",
)


def serve_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Expose /metrics on its own port (0 disables it)."""
    if port:
        start_http_server(port, addr=addr)


# Flow runs (services/notifications: the flow engine, its timers and its effects).
FLOW_TIMER_LATENESS = Histogram(
    "crm_flow_timer_lateness_seconds",
    "How late a flow run's delay or timeout fired, after the instant it was due.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
FLOW_EFFECTS = Counter(
    "crm_flow_effects_total",
    "Flow run effects carried out, by kind (send, tag, callwebhook, ask) and outcome"
    " (done, retry, failed).",
    ["kind", "outcome"],
)
