"""The notifications service's settings (environment variables, shared/settings.py) and what
the composition root (app.py) builds from them: the send policy's rules, the pipeline's
signing and tracking, the dispatcher's pacing, the trusted proxies, the soft-bounce rule, the
attribution rule of reports."""

from __future__ import annotations

from datetime import timedelta

from services.notifications.adapters.tracking_http import Network, trusted_networks
from services.notifications.application.dispatcher import Dispatching
from services.notifications.application.facts import Pipeline
from services.notifications.domain import attribution, policy
from services.notifications.domain.bounces import SoftBounces
from services.notifications.domain.tracking import TrackingTokens
from services.notifications.domain.unsubscribe import Unsubscribe
from services.notifications.domain.variant import EMAIL, SMS, WEBHOOK
from shared.settings import Settings


class NotificationsSettings(Settings):
    contacts_target: str = "127.0.0.1:50051"  # contacts' gRPC address (profiles, consent)
    orders_target: str = "127.0.0.1:50052"  # orders' gRPC address (metrics, carts, orders)
    # segmentation's gRPC address: campaigns' segments and their members as of the send instant
    segmentation_target: str = "127.0.0.1:50053"
    # The delivery workers (the `delivery` role, DeliveryService), host:port: make run's by
    # default; compose and Kubernetes name the notifications-delivery service.
    delivery_url: str = "127.0.0.1:50254"
    email_from: str = "CRM <no-reply@localhost>"
    sms_from: str = "CRM"
    # Marketing caps per channel and rolling window; 0 disables a channel's cap.
    email_cap: int = 3
    sms_cap: int = 3
    cap_window_days: float = 7.0
    # Least hours between two marketing messages on a channel (smart sending); 0 disables.
    email_smart_sending_hours: float = 16.0
    sms_smart_sending_hours: float = 24.0
    # Quiet hours per channel, local "HH:MM-HH:MM" in the contact's zone; "" for none.
    email_quiet_hours: str = ""
    sms_quiet_hours: str = "21:00-08:00"
    webhook_quiet_hours: str = ""
    default_time_zone: str = "UTC"  # for contacts with no (or an unknown) time zone
    # List-Unsubscribe on marketing email: <base>/u/<signed token>, and a mailto when set; and
    # (email_tracking) the opens and clicks of HTML email through <base>/o/… and <base>/c/….
    # The serve role answers them on HTTP_PORT (0: no HTTP server), which <base> must reach.
    tracking_base_url: str = ""
    tracking_secret: str = ""
    unsubscribe_mailto: str = ""
    email_tracking: bool = True
    # Proxies (addresses or networks, comma-separated) whose X-Forwarded-For the tracking
    # endpoints believe for the unsubscribe evidence's IP address: your Ingress's.
    trusted_proxies: str = ""
    http_port: int = 0
    # Bounce/complaint intake (mounted at <tracking server>/intake/): the Standard Webhooks
    # secret reports are signed with ("": every report refused 401); SMS status callbacks are
    # signed with the gateway's auth token ("": refused) over the public URL the gateway posts
    # to: INTAKE_BASE_URL (default TRACKING_BASE_URL + "/intake") + "/sms/status".
    intake_secret: str = ""
    intake_base_url: str = ""
    # Soft bounces suppress the channel at the limit-th within the window (days).
    soft_bounce_limit: int = 3
    soft_bounce_window_days: float = 7.0
    sms_auth_token: str = ""
    dispatch_batch_size: int = 100
    dispatch_max_attempts: int = 5
    dispatch_backoff_seconds: float = 30.0
    dispatch_max_backoff_seconds: float = 3600.0
    dispatch_lease_seconds: float = 120.0  # no outcome by then: the attempt is in doubt
    dispatch_poll_seconds: float = 1.0
    dispatch_pipelines: int = 2  # batches with the workers at once
    # Reports (project role): an order placed within the window after the contact's last touch
    # of a message (a click; "open": an open or a click) is credited to that message.
    attribution_window_days: float = 5.0
    attribution_touch: str = attribution.CLICK


def rules(s: NotificationsSettings) -> policy.Rules:
    def channel(cap: int, hours: float, quiet: str) -> policy.ChannelRules:
        return policy.ChannelRules(
            cap=cap or None,
            smart_sending=timedelta(hours=hours) if hours else None,
            quiet_hours=policy.parse_window(quiet),
        )

    return policy.Rules(
        channels={
            EMAIL: channel(s.email_cap, s.email_smart_sending_hours, s.email_quiet_hours),
            SMS: channel(s.sms_cap, s.sms_smart_sending_hours, s.sms_quiet_hours),
            WEBHOOK: channel(0, 0, s.webhook_quiet_hours),
        },
        cap_window=timedelta(days=s.cap_window_days),
        default_time_zone=s.default_time_zone,
    )


def signing(s: NotificationsSettings) -> tuple[Unsubscribe, TrackingTokens] | None:
    """The unsubscribe and tracking tokens of TRACKING_SECRET, when TRACKING_BASE_URL is set."""
    if not s.tracking_base_url:
        return None
    if not s.tracking_secret:
        raise SystemExit("TRACKING_BASE_URL is set: TRACKING_SECRET must be too")
    secret = s.tracking_secret.encode()
    return (
        Unsubscribe(s.tracking_base_url, secret, s.unsubscribe_mailto),
        TrackingTokens(s.tracking_base_url, secret),
    )


def pipeline(s: NotificationsSettings) -> Pipeline:
    signed = signing(s)
    if signed is None:
        return Pipeline(rules(s), s.email_from, s.sms_from)
    unsubscribe, tokens = signed
    tracking = tokens if s.email_tracking else None
    return Pipeline(rules(s), s.email_from, s.sms_from, unsubscribe, tracking)


def dispatching(s: NotificationsSettings) -> Dispatching:
    return Dispatching(
        batch_size=s.dispatch_batch_size,
        max_attempts=s.dispatch_max_attempts,
        backoff=timedelta(seconds=s.dispatch_backoff_seconds),
        max_backoff=timedelta(seconds=s.dispatch_max_backoff_seconds),
        lease=timedelta(seconds=s.dispatch_lease_seconds),
        poll_seconds=s.dispatch_poll_seconds,
        pipelines=s.dispatch_pipelines,
    )


def proxies(settings: NotificationsSettings) -> list[Network]:
    try:
        return trusted_networks(settings.trusted_proxies)
    except ValueError as err:
        raise SystemExit(f"TRUSTED_PROXIES: {err}") from None


def soft_bounces(s: NotificationsSettings) -> SoftBounces:
    if s.soft_bounce_limit < 1 or s.soft_bounce_window_days <= 0:
        raise SystemExit("SOFT_BOUNCE_LIMIT must be 1 or more, SOFT_BOUNCE_WINDOW_DAYS above 0")
    return SoftBounces(s.soft_bounce_limit, timedelta(days=s.soft_bounce_window_days))


def attribution_rule(s: NotificationsSettings) -> attribution.Rule:
    try:
        return attribution.Rule(timedelta(days=s.attribution_window_days), s.attribution_touch)
    except (ValueError, OverflowError) as err:
        raise SystemExit(f"ATTRIBUTION_WINDOW_DAYS / ATTRIBUTION_TOUCH: {err}") from None
