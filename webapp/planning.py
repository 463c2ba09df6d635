"""A new participant's pages: headphone check, volume, training, randomised trials, questionnaire.

The whole sequence is drawn once, when the participant consents, and stored; reloading the page or
reopening the link later resumes at the first page not yet submitted.
"""

from __future__ import annotations

import secrets
from collections import Counter

from sqlalchemy import bindparam, func, insert, select

from . import headphones
from .manifest import StimulusSet, Trial
from .storage import AudioToken, FastConnection, Page, Participant, utcnow

TOKEN_BYTES = 24


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


_ASSIGNED = (
    select(Page.trial, func.count().label("n"))
    .join(Participant, Participant.id == Page.participant_id)
    .where(Participant.test == bindparam("test"), Page.kind == "trial")
    .group_by(Page.trial)
)
_INSERT_PARTICIPANT = insert(Participant.__table__).returning(Participant.__table__.c.id)
_INSERT_PAGES = insert(Page.__table__)
_INSERT_AUDIO_TOKENS = insert(AudioToken.__table__)


def _balanced_subset(
    conn: FastConnection, stim: StimulusSet, k: int, rng: secrets.SystemRandom
) -> list[Trial]:
    """The ``k`` rated trials assigned least often so far (ties broken at random)."""
    rows = conn.all(_ASSIGNED, {"test": stim.name})
    counts = Counter({trial: n for trial, n in rows})
    trials = list(stim.rated_trials)
    keyed = [(counts.get(t.id, 0), rng.random(), t) for t in trials]
    keyed.sort(key=lambda x: (x[0], x[1]))
    return [t for _, _, t in keyed[:k]]


_PAGE_IDS = select(Page.position, Page.id).where(Page.participant_id == bindparam("participant_id"))


def start_participant(
    conn: FastConnection,
    stim: StimulusSet,
    crowd: dict[str, str],
    language: str,
    user_agent: str = "",
    rng: secrets.SystemRandom | None = None,
) -> str:
    """Create a participant and all their pages inside ``conn``'s transaction; returns the
    participant's (secret) token. Four statements: the participant, its pages (one executemany),
    their ids, their audio tokens (one executemany)."""
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
