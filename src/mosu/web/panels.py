"""Extra panels of the Usage page, each a function of the store and the principal.

A panel function returns ``Panel(template, values)`` or None (nothing to show for this
principal). The Usage page renders every panel of ``USAGE_PANELS`` in order, below the
GPU-hours, with the template under ``templates/panels/``. A credits panel (balance,
burn per day) is one such function and one template, added here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mosu.service.services.auth import Principal


@dataclass(frozen=True)
class Panel:
    template: str
    """Under ``templates/panels/``."""
    values: dict[str, Any] = field(default_factory=dict)


PanelFunction = Callable[[Session, Principal, datetime], Panel | None]


def _credits(session: Session, principal: Principal, now: datetime) -> Panel | None:
    from mosu.web.credits_panel import credits_panel  # its module imports this one

    return credits_panel(session, principal, now)


USAGE_PANELS: tuple[PanelFunction, ...] = (_credits,)
"""Read with the signed-in principal: a panel shows only what the principal may see."""
