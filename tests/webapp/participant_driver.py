"""Drive a participant through a test with Flask's test client (no browser), as the page's JS would."""

from __future__ import annotations

import json
import re
import secrets

from sqlalchemy import select

from webapp.headphones import answer_key
from webapp.storage import Page, Participant

META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
DATA = re.compile(r'<script type="application/json" id="page-data">(.*?)</script>', re.S)


def csrf_token(html: str) -> str:
    return META.search(html).group(1)


def page_data(html: str) -> dict | None:
    m = DATA.search(html)
    return json.loads(m.group(1)) if m else None


class Driver:
    def __init__(self, client, test: str = "demo"):
        self.client = client
        self.test = test
        self.csrf = None

    def start(self, query: str = "", lang: str | None = None):
        r = self.client.get(f"/t/{self.test}/{query}")
        assert r.status_code == 200, r.status_code
        html = r.get_data(as_text=True)
        self.csrf = csrf_token(html)
        form = {"consent": "yes", "csrf_token": self.csrf}
        form.update(dict(re.findall(r'<input type="hidden" name="([A-Z_]+)" value="([^"]*)">', html)))
        if lang:
            form["lang"] = lang
        r = self.client.post(f"/t/{self.test}/start", data=form)
        assert r.status_code == 302, (r.status_code, r.get_data(as_text=True)[:500])
        return r

    def current(self) -> tuple[str, dict | None]:
        r = self.client.get(f"/t/{self.test}/page")
        assert r.status_code == 200
        html = r.get_data(as_text=True)
        self.csrf = csrf_token(html)
        return html, page_data(html)

    def post(self, body, key: str | None = None, raw: bytes | None = None, headers=None):
        if raw is None:
            payload = dict(body)
            payload.setdefault("idempotency_key", key or secrets.token_hex(8))
            raw = json.dumps(payload).encode()
        h = {"Content-Type": "application/json", "X-CSRFToken": self.csrf}
        h.update(headers or {})
        return self.client.post(f"/t/{self.test}/api/page", data=raw, headers=h)

    @staticmethod
    def mushra_body(data: dict, scores: list[float | None] | None = None) -> dict:
        n = len(data["sounds"])
        scores = scores if scores is not None else [100] + [50] * (n - 1)
        return {
            "position": data["position"],
            "ratings": [
                {"stimulus": s["stimulus"], "score": scores[i], "plays": 1, "listening_ms": 1000 + i}
                for i, s in enumerate(data["sounds"])
            ],
            "duration_ms": 20000,
            "loop_used": False,
        }

    def answer(self, data: dict, storage=None, scores=None, questionnaire=None) -> dict:
        """A valid submission for the page described by ``data`` (headphones need ``storage``)."""
        kind = data["kind"]
        if kind in ("training", "trial"):
            return self.mushra_body(data, scores)
        if kind == "volume":
            return {"position": data["position"], "gain_db": -1.5, "plays": 2}
        if kind == "headphones":
            with storage.reading() as s:
                page = s.scalar(
                    select(Page)
                    .join(Participant, Participant.id == Page.participant_id)
                    .where(Page.kind == "headphones", Page.position == data["position"],
                           Participant.token == self.client.get_cookie("earshot_participant", path=f"/t/{self.test}/").value)
                )
                return {"position": data["position"], "answers": answer_key(page.setup["rounds"])}
        if kind == "questionnaire":
            answers = questionnaire or {"age": 30, "hearing_problems": "no", "experience": "some"}
            return {"position": data["position"], "answers": answers}
        raise AssertionError(kind)

    def complete(self, storage=None, scores_for=None) -> list[dict]:
        """Submit every page; ``scores_for(data)`` gives the MUSHRA scores. Returns what was sent."""
        sent = []
        while True:
            html, data = self.current()
            if data is None:
                return sent
            scores = scores_for(data) if scores_for and data["kind"] in ("training", "trial") else None
            body = self.answer(data, storage, scores=scores)
            r = self.post(body)
            assert r.status_code == 200, r.get_data(as_text=True)
            sent.append({"data": data, "body": body})
