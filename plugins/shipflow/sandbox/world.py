"""State the sandbox's services share: which revision serves traffic for each deployment group.

CodeDeploy writes it (a revision starts taking traffic when its deployment goes InProgress, and the
previous one returns when a deployment fails or is rolled back); CloudWatch reads it to emit the
service's synthetic metrics. Keeping it here avoids an import cycle between those two modules.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class LiveRevision:
    account_id: str
    region: str
    application: str
    deployment_group: str
    revision: str  # the revision's label, see codedeploy.revision_label()
    deployment_id: str
    since: float = field(default_factory=time.time)


_lock = threading.Lock()
_live: dict[tuple[str, str, str, str], LiveRevision] = {}


def set_live(rev: LiveRevision) -> None:
    with _lock:
        _live[(rev.account_id, rev.region, rev.application, rev.deployment_group)] = rev


def get_live(account_id: str, region: str, application: str, group: str) -> LiveRevision | None:
    with _lock:
        return _live.get((account_id, region, application, group))


def live_revisions() -> list[LiveRevision]:
    with _lock:
        return list(_live.values())


def reset() -> None:
    with _lock:
        _live.clear()
