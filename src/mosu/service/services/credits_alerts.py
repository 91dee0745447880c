"""Credit threshold alerts: once a tenant has used 80 % (then 100 %) of the credits
granted to it and in force, an event (``credits-alert``, in ``/v1/events`` and the
stream, visible to that tenant and the operator) and, when configured, a signed POST to
the operator's webhook, retried with backoff.

Each threshold fires once per granted amount: a new grant (a new amount in force) arms
them again. The row recording an alert is written in the metering's transaction, so a
crash before the commit fires it again at the next metering, and never twice.

The webhook body is JSON; ``X-Mosu-Signature`` is ``sha256=`` and the hex HMAC-SHA256,
keyed by the shared secret, of ``X-Mosu-Timestamp`` + ``.`` + the body, so a receiver
can check both who sent it and that it is fresh.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mosu.core.credits import from_micro, thresholds_crossed
from mosu.service.db.credit_rows import CreditAlertRow
from mosu.service.db.rows import EventRow
from mosu.service.services.credits import balances_micro, granted_in_force

log = logging.getLogger("mosu.credits")

THRESHOLDS = (0.8, 1.0)
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class CreditAlert:
    tenant: str
    threshold_percent: int
    granted: float
    balance: float
    at: float


def check_thresholds(
    session: Session,
    tenants: Sequence[str],
    *,
    now: float,
    thresholds: Sequence[float] = THRESHOLDS,
) -> list[CreditAlert]:
    """Record (and return) the alerts newly due; call inside the metering's transaction."""
    if not tenants:
        return []
    granted = granted_in_force(session, list(tenants), now)
    balance = balances_micro(session, list(tenants))
    sent = {
        (a.tenant, a.threshold, a.granted_micro)
        for a in session.scalars(select(CreditAlertRow).where(CreditAlertRow.tenant.in_(tenants)))
    }
    out = []
    for tenant in sorted(tenants):
        g = granted.get(tenant, 0)
        b = balance.get(tenant, 0)
        for t in thresholds_crossed(g, b, thresholds):
            pct = round(t * 100)
            if (tenant, pct, g) in sent:
                continue
            session.add(CreditAlertRow(tenant=tenant, threshold=pct, granted_micro=g, at=now))
            alert = CreditAlert(tenant, pct, from_micro(g), from_micro(b), now)
            session.add(
                EventRow(
                    at=now,
                    tenant=tenant,
                    kind="credits-alert",
                    reason=f"credits-{pct}",
                    message=(
                        f"{tenant} has used {pct}% of the {alert.granted:g} credits granted "
                        f"(balance {alert.balance:g})"
                    ),
                )
            )
            out.append(alert)
    session.flush()
    return out


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookSender:
    """Delivers alerts on its own thread, in order, each retried with backoff until it
    is accepted (2xx) or the retries run out (then logged)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        delays_s: Sequence[float] = RETRY_DELAYS_S,
        timeout_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._url = url
        self._secret = secret
        self._delays = tuple(delays_s)
        self._timeout = timeout_s
        self._sleep = sleep
        self._queue: queue.Queue[CreditAlert | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="mosu-credit-webhook", daemon=True)
        self._thread.start()
        self.delivered = 0
        self.attempts = 0

    def send(self, alerts: Sequence[CreditAlert]) -> None:
        for a in alerts:
            self._queue.put(a)

    def close(self, timeout_s: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            self._deliver(alert)

    def _deliver(self, alert: CreditAlert) -> None:
        body = json.dumps({"kind": "credits-alert", **asdict(alert)}, sort_keys=True).encode()
        for delay in (*self._delays, None):
            self.attempts += 1
            timestamp = str(int(time.time()))
            request = urllib.request.Request(
                self._url,
                data=body,
                method="POST",
                headers={
                    "Content-Type": "application/json",
                    "X-Mosu-Timestamp": timestamp,
                    "X-Mosu-Signature": sign(self._secret, timestamp, body),
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    if 200 <= response.status < 300:
                        self.delivered += 1
                        return
            except (urllib.error.URLError, OSError) as exc:
                log.warning("credit alert webhook failed: %s", exc)
            if delay is None:
                log.error("credit alert for %s not delivered; giving up", alert.tenant)
                return
            self._sleep(delay)
