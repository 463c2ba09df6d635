"""A new participant's pages: headphone check, volume, training, randomised trials, questionnaire.

The whole sequence is drawn once, when the participant consents, and stored; reloading the page or
reopening the link later resumes at the first page not yet submitted.
"""

from __future__ import annotations

import secrets
from collections import Counter

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from . import headphones
from .manifest import StimulusSet, Trial
from .storage import AudioToken, Page, Participant

TOKEN_BYTES = 24


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def _balanced_subset(
    session: Session, stim: StimulusSet, k: int, rng: secrets.SystemRandom
) -> list[Trial]:
    """The ``k`` rated trials assigned least often so far (ties broken at random)."""
    rows = session.execute(
        select(Page.trial, func.count())
        .join(Participant, Participant.id == Page.participant_id)
        .where(Participant.test == stim.name, Page.kind == "trial")
        .group_by(Page.trial)
    ).all()
    counts = Counter({trial: n for trial, n in rows})
    trials = list(stim.rated_trials)
    keyed = [(counts.get(t.id, 0), rng.random(), t) for t in trials]
    keyed.sort(key=lambda x: (x[0], x[1]))
    return [t for _, _, t in keyed[:k]]


def start_participant(
    session: Session,
    stim: StimulusSet,
    crowd: dict[str, str],
    language: str,
    user_agent: str = "",
    rng: secrets.SystemRandom | None = None,
) -> Participant:
    """Create a participant and all their pages inside ``session``'s transaction."""
    rng = rng or secrets.SystemRandom()
    cfg = stim.settings
    participant = Participant(
        test=stim.name,
        token=new_token(),
        code="P" + secrets.token_hex(5),
        language=language,
        crowd=crowd,
        user_agent=user_agent[:512],
    )
    session.add(participant)
    session.flush()

    pages: list[Page] = []
    tokens: list[tuple[Page, int]] = []

    if cfg.headphone_check.enabled:
        rounds = headphones.plan_rounds(cfg.headphone_check.trials, rng)
        page = Page(kind="headphones", setup={"rounds": rounds})
        pages.append(page)
        tokens += [(page, i) for i in range(len(rounds))]
    if cfg.volume_check:
        first = (stim.training_trials or stim.rated_trials)[0]
        page = Page(kind="volume", trial=first.id)
        pages.append(page)
        tokens.append((page, -1))

    def mushra_page(kind: str, trial: Trial, trial_position: int | None) -> Page:
        order = [c.id for c in trial.conditions]
        if cfg.randomise_conditions:
            rng.shuffle(order)
        page = Page(kind=kind, trial=trial.id, trial_position=trial_position, condition_order=order)
        tokens.extend((page, slot) for slot in range(-1, len(order)))
        return page

    for trial in stim.training_trials:
        pages.append(mushra_page("training", trial, None))
    if cfg.trials_per_participant is not None:
        rated = _balanced_subset(session, stim, cfg.trials_per_participant, rng)
    else:
        rated = list(stim.rated_trials)
    if cfg.randomise_trials:
        rng.shuffle(rated)
    for i, trial in enumerate(rated, start=1):
        pages.append(mushra_page("trial", trial, i))
    if cfg.questionnaire:
        pages.append(Page(kind="questionnaire"))

    assigned: list[tuple[Page, int, str]] = []
    for page, slot in tokens:
        token = new_token()
        page.tokens = [*(page.tokens or []), token]
        assigned.append((page, slot, token))
    for position, page in enumerate(pages):
        page.participant_id = participant.id
        page.position = position
    session.add_all(pages)
    session.flush()
    session.execute(
        insert(AudioToken),
        [{"token": tok, "participant_id": participant.id, "page_id": page.id, "slot": slot} for page, slot, tok in assigned],
    )
    return participant
