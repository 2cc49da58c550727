"""The daemon's visit recorder: each finished track's sighting joins its identity's visit; visits are
kept in the sighting log, announced on `<prefix>/visits` (`new` / `end`, QoS 1, through the durable
outbox), and Home Assistant gets each person's last visit, the count of visitors today and the day's
digest (retained on `<prefix>/digest`).

An event sink (`recorder(event)`, from the daemon's fan-out) plus `tick()` from the daemon's main
loop, which ends visits once their gap has passed. A visit still open when the daemon stops stays open
in the log; the next start continues it, or ends it at the first tick.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from camd.history.visits import Visit, VisitBuilder
from camd.types import EventKind, TrackEvent

if TYPE_CHECKING:
    from camd.config.schema import Config
    from camd.identity.sightings import SightingLog
    from camd.publish.hass import HassBridge
    from camd.publish.mqtt import MqttPublisher

log = logging.getLogger(__name__)

VISITOR_CLASSES = ("visitor", "stranger")


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds")


def visit_message(kind: str, visit: Visit) -> dict[str, Any]:
    """The `<prefix>/visits` payload: {type: new|end, visit: {...}} with ISO times beside the epochs."""
    body = visit.to_dict()
    body.update(arrival=iso(visit.start_time), departure=iso(visit.end_time) if kind == "end" else None)
    return {"type": kind, "visit": body}


class HistoryRecorder:
    def __init__(
        self,
        config: Config,
        log: SightingLog,
        publisher: MqttPublisher | None = None,
        hass: HassBridge | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.log = log
        self.publisher = publisher
        self.hass = hass
        self._clock = clock
        self._lock = threading.Lock()
        reopened = [Visit.from_dict(row) for row in log.visits("ended = 0")]
        self.builder = VisitBuilder(config.history.visit_gap_s, reopened)
        self._digest_at = 0.0  # when the digest was last published
        self._digest_stale = True  # a visit ended since (or nothing published yet)
        self.published: dict[str, int] = {"new": 0, "end": 0}

    # -- input -------------------------------------------------------------------------------------

    def __call__(self, event: TrackEvent) -> None:
        if event.kind is not EventKind.END:
            return
        sighting = self._sighting(event)
        if sighting is None:
            return
        with self._lock:
            changes = self.builder.add(sighting)
            for kind, visit in changes:
                self._record(kind, visit)

    def tick(self, now: float | None = None) -> None:
        """End the visits whose gap has passed; publish the digest when due."""
        now = self._clock() if now is None else now
        with self._lock:
            for visit in self.builder.close_due(now):
                self._record("end", visit)
            due = self._digest_stale and now - self._digest_at >= self.config.history.digest_every_s
        if due and self.publisher is not None:
            self.publish_digest(now)

    def _sighting(self, event: TrackEvent) -> dict[str, Any] | None:
        """The stored sighting of an ended track (its identity and retention), or one from the event
        itself when none was stored (a store outage: the visit still counts)."""
        after = event.after
        stored = self.log.select("id = ?", (after.event_id,), limit=1)
        if stored:
            return stored[0]
        identity = after.identity
        if identity.global_id is None:
            return None
        retention = self.config.identity.retention_days * 86400.0
        return {
            "sighting_id": after.event_id, "camera": after.camera, "label": after.label,
            "start_time": after.start_time, "end_time": after.end_time or after.frame_time,
            "person_id": identity.global_id, "identity": identity.name,
            "identity_class": identity.identity_class,
            "expires_at": None if identity.name else self._clock() + retention,
        }  # fmt: skip

    # -- output ------------------------------------------------------------------------------------

    def _record(self, kind: str, visit: Visit) -> None:
        try:
            self.log.put_visit(visit.stored())
        except Exception as exc:  # a full disk: the visit is still announced
            log.error("history: could not store visit %s (%s)", visit.id, exc)
        if kind == "update":
            return
        self.published[kind] += 1
        message = visit_message(kind, visit)
        if self.publisher is not None:
            self.publisher.publish("visits", message, retain=False, qos=1, durable=True)
        self._to_hass(kind, visit, message["visit"])
        if kind == "end":
            self._digest_stale = True

    def _to_hass(self, kind: str, visit: Visit, body: dict[str, Any]) -> None:
        if self.hass is None or self.publisher is None:
            return
        topics = self.hass.topics
        slug = self.hass.discovery.person_slugs().get(visit.name or "")
        if slug is not None:
            self._state(topics.last_visit(slug), {**body, "state": kind})
        if kind == "new" and visit.identity_class in VISITOR_CLASSES:
            self._state(topics.visitors_today, self._visitors_today())

    def _visitors_today(self) -> dict[str, Any]:
        start = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        rows = self.log.visits("start_time >= ?", (start,))
        visitors = sorted({r["person_id"] for r in rows if r.get("identity_class") in VISITOR_CLASSES})
        return {"count": len(visitors), "who": visitors[:50]}

    def publish_digest(self, now: float | None = None) -> dict[str, Any] | None:
        """Today's digest, retained on <prefix>/digest (and Home Assistant's sensor)."""
        from camd.history.digest import digest
        from camd.history.queries import visits_in
        from camd.history.when import day_range

        now = self._clock() if now is None else now
        self._digest_at, self._digest_stale = now, False
        if self.publisher is None:
            return None
        try:
            span, day = day_range(None, datetime.fromtimestamp(now))
            visits = visits_in(self.log, span, self.config.history.visit_gap_s)
            sightings = self.log.select("end_time >= ? AND end_time <= ?", (span.after, span.before))
            answer = digest(day, float(span.after or 0.0), float(span.before or 0.0), visits, sightings,
                            self.log)  # fmt: skip
        except Exception:
            log.exception("history: the digest failed")
            return None
        message = {k: answer[k] for k in ("day", "summary", "text", "lines", "counts", "visitors")}
        self.publisher.publish("digest", message, retain=True, qos=1, durable=False)
        if self.hass is not None:
            self._state(self.hass.topics.visitors_today, self._visitors_today())
        return message

    def _state(self, topic: str, payload: dict[str, Any]) -> None:
        assert self.publisher is not None
        self.publisher.publish_topic(topic, payload, retain=True, qos=1, durable=False)
