"""A new participant's pages: headphone check, volume, training, randomised trials, questionnaire.

The whole sequence is drawn once, when the participant consents, and stored; reloading the page or
reopening the link later resumes at the first page not yet submitted.
"""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import timedelta

from sqlalchemy import bindparam, delete, exists, func, insert, or_, select

from . import headphones
from .manifest import StimulusSet, Trial
from .storage import AudioToken, FastConnection, Page, Participant, ThrottleEvent, utcnow

TOKEN_BYTES = 24


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


_SUBMITTED = Page.__table__.alias("submitted")
# Only participants who are taking part count: those who submitted a page, and those who
# consented recently and may still be on their first page. Someone who opened the test and left
# (or a bot) would otherwise hold their trials' counts up and starve those trials of listeners.
_ASSIGNED = (
    select(Page.trial, func.count().label("n"))
    .join(Participant, Participant.id == Page.participant_id)
    .where(
        Participant.test == bindparam("test"),
        Page.kind == "trial",
        or_(
            Participant.created_at >= bindparam("recent_since"),
            exists().where(_SUBMITTED.c.participant_id == Participant.id, _SUBMITTED.c.submitted_at.is_not(None)),
        ),
    )
    .group_by(Page.trial)
)
_INSERT_PARTICIPANT = insert(Participant.__table__).returning(Participant.__table__.c.id)
_INSERT_PAGES = insert(Page.__table__)
_INSERT_AUDIO_TOKENS = insert(AudioToken.__table__)


def _balanced_subset(
    conn: FastConnection, stim: StimulusSet, k: int, rng: secrets.SystemRandom
) -> list[Trial]:
    """The ``k`` rated trials assigned least often so far (ties broken at random)."""
    recent_since = utcnow() - timedelta(seconds=stim.settings.abandoned_after_s)
    rows = conn.all(_ASSIGNED, {"test": stim.name, "recent_since": recent_since})
    counts = Counter({trial: n for trial, n in rows})
    trials = list(stim.rated_trials)
    keyed = [(counts.get(t.id, 0), rng.random(), t) for t in trials]
    keyed.sort(key=lambda x: (x[0], x[1]))
    return [t for _, _, t in keyed[:k]]


_PAGE_IDS = select(Page.position, Page.id).where(Page.participant_id == bindparam("participant_id"))
_BY_CONSENT = select(Participant.__table__.c.token).where(
    Participant.__table__.c.consent_nonce == bindparam("nonce"), Participant.__table__.c.test == bindparam("test")
)
_T = ThrottleEvent.__table__
_RECENT_STARTS = (
    select(_T.c.at)
    .where(_T.c.scope == bindparam("scope"), _T.c.key == bindparam("key"), _T.c.at > bindparam("since"))
    .order_by(_T.c.at)
)
_INSERT_EVENT = insert(_T)
_FORGET_STARTS = delete(_T).where(_T.c.scope == bindparam("scope"), _T.c.at <= bindparam("before"))


def participant_for_consent(conn: FastConnection, test: str, nonce: str) -> str | None:
    """The token of the participant created by the consent form with ``nonce``, if any."""
    row = conn.first(_BY_CONSENT, {"nonce": nonce, "test": test})
    return row.token if row else None


def admit(conn: FastConnection, stim: StimulusSet, client_key: str, now: float) -> float:
    """Count a new participant from the client ``client_key`` (a keyed digest of its address)
    against ``stim``'s per-address limit, inside ``conn``'s write transaction. Returns 0 when
    admitted, else the seconds until the next one would be (nothing is counted then)."""
    cfg = stim.settings
    scope = f"start:{stim.name}"
    window = cfg.new_participants_window_s
    times = [row.at for row in conn.all(_RECENT_STARTS, {"scope": scope, "key": client_key, "since": now - window})]
    if len(times) >= cfg.new_participants_per_address:
        return max(times[len(times) - cfg.new_participants_per_address] + window - now, 0.001)
    conn.execute(_FORGET_STARTS, {"scope": scope, "before": now - window})
    conn.insert(_INSERT_EVENT, {"scope": scope, "key": client_key, "at": now})
    return 0.0


def start_participant(
    conn: FastConnection,
    stim: StimulusSet,
    crowd: dict[str, str],
    language: str,
    user_agent: str = "",
    rng: secrets.SystemRandom | None = None,
    consent_nonce: str | None = None,
) -> str:
    """Create a participant and all their pages inside ``conn``'s transaction; returns the
    participant's (secret) token. Four statements: the participant, its pages (one executemany),
    their ids, their audio tokens (one executemany). ``consent_nonce`` is unique: a second
    participant with the same one fails with an IntegrityError."""
    rng = rng or secrets.SystemRandom()
    cfg = stim.settings
    token = new_token()
    participant_id = conn.insert(
        _INSERT_PARTICIPANT,
        {
            "test": stim.name,
            "token": token,
            "code": "P" + secrets.token_hex(5),
            "language": language,
            "crowd": crowd,
            "user_agent": user_agent[:512],
            "created_at": utcnow(),
            "excluded": False,
            "stopped": False,
            "consent_nonce": consent_nonce,
        },
    ).id

    # Each page: its column values and its audio slots (in token order).
    pages: list[tuple[dict, list[int]]] = []
    if cfg.headphone_check.enabled:
        rounds = headphones.plan_rounds(cfg.headphone_check.trials, rng)
        pages.append(({"kind": "headphones", "setup": {"rounds": rounds}}, list(range(len(rounds)))))
    if cfg.volume_check:
        first = (stim.training_trials or stim.rated_trials)[0]
        pages.append(({"kind": "volume", "trial": first.id}, [-1]))

    def mushra_page(kind: str, trial: Trial, trial_position: int | None) -> tuple[dict, list[int]]:
        order = [c.id for c in trial.conditions]
        if cfg.randomise_conditions:
            rng.shuffle(order)
        values = {"kind": kind, "trial": trial.id, "trial_position": trial_position, "condition_order": order}
        return values, list(range(-1, len(order)))

    for trial in stim.training_trials:
        pages.append(mushra_page("training", trial, None))
    if cfg.trials_per_participant is not None:
        rated = _balanced_subset(conn, stim, cfg.trials_per_participant, rng)
    else:
        rated = list(stim.rated_trials)
    if cfg.randomise_trials:
        rng.shuffle(rated)
    for i, trial in enumerate(rated, start=1):
        pages.append(mushra_page("trial", trial, i))
    if cfg.questionnaire:
        pages.append(({"kind": "questionnaire"}, []))

    columns = ("kind", "trial", "trial_position", "condition_order", "tokens", "setup")
    rows, assigned = [], []
    for position, (values, slots) in enumerate(pages):
        tokens = [new_token() for _ in slots]
        values = {**dict.fromkeys(columns), **values, "tokens": tokens or None}
        rows.append({**values, "participant_id": participant_id, "position": position})
        assigned.append(list(zip(slots, tokens, strict=True)))
    conn.executemany(_INSERT_PAGES, rows)
    ids = dict(conn.all(_PAGE_IDS, {"participant_id": participant_id}))
    audio = [
        {"token": tok, "participant_id": participant_id, "page_id": ids[position], "slot": slot}
        for position, slots in enumerate(assigned)
        for slot, tok in slots
    ]
    if audio:
        conn.executemany(_INSERT_AUDIO_TOKENS, audio)
    return token
