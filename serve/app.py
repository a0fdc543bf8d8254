"""The recommendation service: FastAPI over the workspace registry's champion model.

    GET  /recommend?user_id=U&k=10   top-K unseen items with scores and explanations (cold users: popularity)
    POST /predict                    {"pairs": [{"user_id": U, "item_id": I}, ...]} -> rating predictions,
                                     each pair's unknown user or item flagged
    GET  /health                     200 once a model is loaded (503 before)
    GET  /model                      version, publication details (run, split, test metrics, code version)
    GET  /docs, /redoc               the API's documentation, its assets served by the service (offline)

Scores (``/recommend``): ``score_kind`` says what they are. "model score": the model's own ranking score,
higher is better, only the order within one response matters (the fusion's is a weighted sum of per-user
standardised component scores, typically -3 to 3); "popularity": the popularity fallback for a user
unknown to the model, the item's number of training interactions.

A/B test: with ``registry/ab.json`` set (``python -m serve.registry ab VERSION --share 0.1``), that share of
users, chosen by a stable hash of their id, is answered by the challenger; every response says its ``arm``.
With a log database, every answered request (time, user, arm, model version, items, latency) is logged
there in batches (``tasks.serving_log``; ``python -m serve.registry ab-report`` compares the arms).

The champion is followed, not fixed: a background thread polls ``registry/champion.json`` and, when it
names another version, loads that bundle completely and then swaps one reference. Each request reads the
reference once, so a promotion is picked up without a restart and no request sees a half-loaded model.
Every error is a JSON ``{"detail": ...}`` with a 4xx status for bad requests; no stack trace is returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field

from models.serving import RETENTION_DAYS
from models.serving.bundle import load_model
from models.serving.model import MAX_K, RequestError, ServingModel
from models.serving.pseudonym import pseudonym
from models.serving.published import read_ab, read_champion

MAX_ID_LENGTH = 256
MAX_PAIRS = 10_000
MAX_BODY_BYTES = 8_000_000
log = logging.getLogger("reclab.serve")


class BoundedBodies:
    """ASGI middleware bounding request bodies at ``MAX_BODY_BYTES`` (10,000 pairs of 256-character ids fit in
    about 6 MB): a Content-Length over the limit (or not a number) is answered 413 before anything is read; a
    body sent without a length (chunked) is read up to the limit and answered 413 beyond, before the endpoint
    sees any of it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                return await _too_large()(scope, receive, send)
            return await self.app(scope, receive, send)
        if scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY_BYTES:
                return await _too_large()(scope, receive, send)
        replay = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replayed():
            return replay.pop() if replay else await receive()

        return await self.app(scope, replayed, send)


class Error(BaseModel):
    detail: str | list = Field(description="what was wrong (a list of field errors for a 422)")


def _answers(*codes: int) -> dict:
    """The error statuses an endpoint may answer, documented in its OpenAPI operation."""
    words = {
        400: "the request cannot be read (a body that is not JSON text, an id the model cannot take)",
        413: "the body is over the size limit",
        422: "a parameter or the body does not match the schema",
        500: "an unexpected server error (logged)",
        503: "no model is loaded yet",
    }
    return {code: {"model": Error, "description": words[code]} for code in codes}


class Health(BaseModel):
    status: str = Field(description='"ok" once a model is loaded ("unavailable", with a 503, before)')
    model_version: str | None = Field(None, description="the champion's registry version")
    detail: str | None = Field(None, description="why no model is loaded")


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="allow")  # the publication's details: run, split, metrics, code version

    model_version: str = Field(description="the champion's registry version")
    model: str = Field(description="the registered model's name (e.g. fusion)")
    tasks: list[str] = Field(description="what it serves: rating (/predict), ranking (/recommend)")
    users: int = Field(description="users known to the model (others get the cold-start fallbacks)")
    items: int = Field(description="catalogue items it ranks")


class Neighbour(BaseModel):
    item_id: str
    similarity: float = Field(description="cosine of the fine-tuned LM's item vectors")


class RecommendedItem(BaseModel):
    item_id: str
    score: float = Field(description="see the response's score_kind")
    drivers: dict[str, float] | None = Field(
        None, description="each component's share of the score (they sum to it); with explain=true"
    )
    similar_to: list[Neighbour] | None = Field(
        None, description="the user's training items most similar to this one (the LM's vectors)"
    )


class Recommendations(BaseModel):
    user_id: str
    model_version: str
    arm: str = Field(description='"champion", or "challenger" for users in an A/B test\'s share')
    strategy: str = Field(description='"personalised", or "popularity (unknown user)": the cold-start fallback')
    score_kind: str = Field(description='"model score" (higher is better) or "popularity" (training interactions)')
    items: list[RecommendedItem]
    elapsed_ms: float


class Predictions(BaseModel):
    model_version: str
    predictions: list[float] = Field(description="one rating per pair, clipped to the training rating range")
    cold_user: list[bool] = Field(description="per pair: the user is unknown to the model (a fallback answered)")
    cold_item: list[bool] = Field(description="per pair: the item had no training interactions")


def _too_large() -> JSONResponse:
    return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES:,} bytes"}, status_code=413)


def _is_server_path(key: str, value) -> bool:
    """A publication field that would show where the server keeps its files (never in a response)."""
    return key == "path" or (isinstance(value, str) and (value.startswith("/") or ":\\" in value))


def _without_server_paths(value):
    """``value`` with every field that would show a server path dropped, at any depth (a run's parameters
    carry its workspace folder)."""
    if isinstance(value, dict):
        return {k: _without_server_paths(v) for k, v in value.items() if not _is_server_path(k, v)}
    if isinstance(value, list):
        return [_without_server_paths(v) for v in value if not _is_server_path("", v)]
    return value


def challenger_arm(user_id: str, share: float) -> bool:
    """Whether ``user_id`` is in the challenger's arm: a stable hash of the id, so a user always gets the
    same arm (for a given share), across requests, restarts and machines."""
    digest = hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


class Champion:
    """The served models, following ``registry/champion.json`` and, for an A/B test, ``registry/ab.json``.

    ``arms`` is one immutable tuple (champion, challenger or None, share), replaced in one assignment."""

    def __init__(self, registry: Path, poll_s: float = 2.0, user_key: bytes | None = None):
        self.registry, self.poll_s, self.user_key = Path(registry), poll_s, user_key
        self.arms: tuple[ServingModel | None, ServingModel | None, float] = (None, None, 0.0)
        self.publication: dict = {}
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> ServingModel | None:
        return self.arms[0]

    def arm(self, user_id: str) -> tuple[str, ServingModel | None]:
        champion, challenger, share = self.arms
        if challenger is not None and challenger_arm(user_id, share):
            return "challenger", challenger
        return "champion", champion

    def _load(self, version: str, path: str) -> ServingModel | None:
        for loaded in self.arms[:2]:
            if loaded is not None and loaded.version == version:
                return loaded
        try:
            return ServingModel(load_model(path), version, self.user_key)
        except Exception as err:  # a broken bundle never replaces a working model
            log.error("model %s could not be loaded from %s: %s", version, path, err)
            self.error = f"model {version} could not be loaded ({type(err).__name__}; details in the server log)"
            return None

    def refresh(self) -> bool:
        """Load the champion and the A/B challenger if they changed; returns whether the arms changed."""
        try:
            pointer, ab = read_champion(self.registry), read_ab(self.registry)
        except (OSError, ValueError) as err:
            log.error("cannot read the registry pointers in %s: %s", self.registry, err)
            self.error = f"cannot read the registry pointers ({type(err).__name__}; details in the server log)"
            return False
        if pointer is None:
            self.error = "no champion published yet: run `python -m flows.full` to publish one"
            return False
        champion, challenger, share = self.arms
        wanted = (pointer["version"], ab and ab["challenger"], ab["share"] if ab else 0.0)
        if (champion and champion.version, challenger and challenger.version, share) == wanted:
            return False
        new_champion = self._load(pointer["version"], pointer["path"])
        if new_champion is None:
            return False
        new_challenger = self._load(ab["challenger"], ab["path"]) if ab else None
        if new_champion is not champion:
            publication = Path(pointer["path"]) / "publication.json"
            self.publication = {**pointer, **(json.loads(publication.read_text()) if publication.exists() else {})}
        # one assignment: a request sees the old arms or the new ones, never a mix
        self.arms, self.error = (new_champion, new_challenger, wanted[2] if new_challenger else 0.0), None
        log.info("serving %s (challenger %s, share %s)", pointer["version"], wanted[1], wanted[2])
        return True

    def start(self) -> None:
        self.refresh()
        self._thread = threading.Thread(target=self._follow, name="champion-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.refresh()


class Pair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    item_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: list[Pair] = Field(min_length=1, max_length=MAX_PAIRS)


def create_app(
    registry: str | Path,
    poll_s: float = 2.0,
    log_db: str | Path | None = None,
    retention_days: int = RETENTION_DAYS,
    user_key: bytes | None = None,
) -> FastAPI:
    """The service over ``registry``; ``log_db``: where every answered request is logged (None: not logged),
    keeping requests for ``retention_days`` (older ones removed at start-up). ``user_key``: the workspace's
    key for user pseudonyms: requests bring raw user ids, bundles and the log hold pseudonyms only."""
    champion = Champion(Path(registry), poll_s, user_key)

    def known_as(user_id: str) -> str:
        """The id the log and the A/B split see: the user's pseudonym where the workspace has a key."""
        return user_id if user_key is None else pseudonym(user_id, user_key)

    responses = None
    if log_db is not None:
        from tasks.serving_log import ResponseLog

        responses = ResponseLog(Path(log_db), retention_days=retention_days)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        champion.start()
        if responses is not None:
            responses.start()
        yield
        champion.stop()
        if responses is not None:
            responses.stop()

    # the documentation pages' JavaScript and CSS come from the fastapi-offline package, served here: /docs
    # and /redoc render without internet (ReDoc's script with its footer logo served from here too, not its CDN)
    app = FastAPIOffline(title="reclab", description=__doc__, lifespan=lifespan, redoc_url=None)
    _offline_redoc(app)
    app.state.champion = champion
    app.state.responses = responses

    def model() -> ServingModel:
        current = champion.current
        if current is None:
            raise RequestError(champion.error or "no model loaded yet")
        return current

    app.add_middleware(BoundedBodies)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, err: RequestError):
        status = 503 if champion.current is None else 400
        return JSONResponse({"detail": str(err)}, status_code=status)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)

    # Endpoints are async: each answer is a fraction of a millisecond of numpy, cheaper inline on the event
    # loop than handed to a thread pool.
    @app.get("/health", response_model=Health, response_model_exclude_none=True, responses=_answers(413, 500, 503))
    async def health():
        current = champion.current
        if current is None:
            return JSONResponse({"status": "unavailable", "detail": champion.error}, status_code=503)
        return {"status": "ok", "model_version": current.version}

    @app.get("/model", response_model=ModelInfo, responses=_answers(413, 500, 503))
    async def model_info():
        current = model()
        _, challenger, share = champion.arms
        ab = {"ab_test": {"challenger": challenger.version, "share": share}} if challenger is not None else {}
        publication = _without_server_paths(champion.publication)
        return {
            **publication,
            "model_version": current.version,
            "model": current.model.name,
            "tasks": list(current.model.tasks),
            "users": len(current.model.user_ids),
            "items": current.n_items,
            **ab,
        }

    @app.get("/recommend", response_model=Recommendations, responses=_answers(400, 413, 422, 500, 503))
    async def recommend(
        user_id: str = Query(min_length=1, max_length=MAX_ID_LENGTH, description="the user to recommend for"),
        k: int = Query(10, ge=1, le=MAX_K, description="how many items"),
        explain: bool = Query(True, description="include what drove each item's score"),
    ):
        start = time.perf_counter()
        model()  # 503 before a champion is loaded
        logged_as = known_as(user_id)
        arm, current = champion.arm(logged_as)
        rec = current.recommend(user_id, k, explain=explain)
        items = [
            {"item_id": item, "score": score, **(rec.explanations[n] if rec.explanations else {})}
            for n, (item, score) in enumerate(zip(rec.items, rec.scores, strict=True))
        ]
        elapsed = 1000 * (time.perf_counter() - start)
        if responses is not None:
            responses.add("recommend", logged_as, arm, current.version, rec.items, elapsed)
        return JSONResponse(
            {
                "user_id": user_id,
                "model_version": current.version,
                "arm": arm,
                "strategy": rec.strategy,
                "score_kind": "popularity" if rec.strategy.startswith("popularity") else "model score",
                "items": items,
                "elapsed_ms": round(elapsed, 3),
            }
        )

    @app.post("/predict", response_model=Predictions, responses=_answers(400, 413, 422, 500, 503))
    async def predict(body: PredictRequest):
        start = time.perf_counter()
        current = model()  # ratings come from the champion: the A/B test compares what users are shown
        users = [p.user_id for p in body.pairs]
        items = [p.item_id for p in body.pairs]
        predictions = current.predict(users, items)
        cold_user, cold_item = current.cold(users, items)
        if responses is not None:
            responses.add(
                "predict", f"{len(users)} pairs", "champion", current.version, [], 1000 * (time.perf_counter() - start)
            )
        return JSONResponse(
            {
                "model_version": current.version,
                "predictions": predictions,
                "cold_user": cold_user,
                "cold_item": cold_item,
            }
        )

    return app


REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"  # in ReDoc's script: its footer's logo, from a CDN


def _offline_redoc(app: FastAPI) -> None:
    """``/redoc`` as fastapi-offline serves it, but with ReDoc's script rewritten to show the service's own
    favicon where it would fetch its logo from the internet."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html
    from fastapi.responses import HTMLResponse, Response

    script = (Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js").read_text(encoding="utf-8")
    script = script.replace(REDOC_LOGO, "/static-offline-docs/favicon.png").encode()

    @app.get("/redoc-assets/redoc.standalone.js", include_in_schema=False)
    async def redoc_script():
        return Response(script, media_type="text/javascript")

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request):
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}/redoc-assets/redoc.standalone.js",
            with_google_fonts=False,
            redoc_favicon_url=f"{root}/static-offline-docs/favicon.png",
        )
        return HTMLResponse(page.body)
