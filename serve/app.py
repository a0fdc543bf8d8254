"""The recommendation service: FastAPI over the workspace registry's champion model.

    GET  /recommend?user_id=U&k=10   top-K unseen items with scores and explanations (cold users: popularity)
    POST /predict                    {"pairs": [{"user_id": U, "item_id": I}, ...]} -> rating predictions
    GET  /health                     200 once a model is loaded (503 before)
    GET  /model                      version, publication details (run, split, test metrics, code version)

The champion is followed, not fixed: a background thread polls ``registry/champion.json`` and, when it
names another version, loads that bundle completely and then swaps one reference. Each request reads the
reference once, so a promotion is picked up without a restart and no request sees a half-loaded model.
Every error is a JSON ``{"detail": ...}`` with a 4xx status for bad requests; no stack trace is returned.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from models.serving import MAX_K, RequestError, ServingModel

MAX_ID_LENGTH = 256
MAX_PAIRS = 10_000
log = logging.getLogger("reclab.serve")


class Champion:
    """The currently served model, following ``registry/champion.json``."""

    def __init__(self, registry: Path, poll_s: float = 2.0):
        self.registry, self.poll_s = Path(registry), poll_s
        self.current: ServingModel | None = None
        self.publication: dict = {}
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load the champion if it changed; returns whether a new model was swapped in."""
        from models.bundle import load_model
        from tasks.registry import read_champion

        try:
            pointer = read_champion(self.registry)
        except (OSError, ValueError) as err:
            self.error = f"cannot read the champion pointer: {err}"
            return False
        if pointer is None:
            self.error = f"no champion in {self.registry} yet: run `python -m flows.full` to publish one"
            return False
        if self.current is not None and self.current.version == pointer["version"]:
            return False
        try:
            model = ServingModel(load_model(pointer["path"]), pointer["version"])
        except Exception as err:  # a broken bundle never replaces a working model
            self.error = f"champion {pointer['version']} could not be loaded: {err}"
            log.error(self.error)
            return False
        publication = Path(pointer["path"]) / "publication.json"
        self.publication = {**pointer, **(json.loads(publication.read_text()) if publication.exists() else {})}
        self.current, self.error = model, None  # one reference swap: requests see the old or the new model
        log.info("serving model %s", pointer["version"])
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


def create_app(registry: str | Path, poll_s: float = 2.0) -> FastAPI:
    champion = Champion(Path(registry), poll_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        champion.start()
        yield
        champion.stop()

    app = FastAPI(title="reclab", description=__doc__, lifespan=lifespan)
    app.state.champion = champion

    def model() -> ServingModel:
        current = champion.current
        if current is None:
            raise RequestError(champion.error or "no model loaded yet")
        return current

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
    @app.get("/health")
    async def health():
        current = champion.current
        if current is None:
            return JSONResponse({"status": "unavailable", "detail": champion.error}, status_code=503)
        return {"status": "ok", "model_version": current.version}

    @app.get("/model")
    async def model_info():
        current = model()
        return {"model_version": current.version, "model": current.model.name, "tasks": list(current.model.tasks),
                "users": len(current.model.user_ids), "items": current.n_items, **champion.publication}  # fmt: skip

    @app.get("/recommend")
    async def recommend(
        user_id: str = Query(min_length=1, max_length=MAX_ID_LENGTH, description="the user to recommend for"),
        k: int = Query(10, ge=1, le=MAX_K, description="how many items"),
        explain: bool = Query(True, description="include what drove each item's score"),
    ):
        start = time.perf_counter()
        current = model()
        rec = current.recommend(user_id, k, explain=explain)
        items = [{"item_id": item, "score": score, **(rec.explanations[n] if rec.explanations else {})}
                 for n, (item, score) in enumerate(zip(rec.items, rec.scores, strict=True))]  # fmt: skip
        return JSONResponse({"user_id": user_id, "model_version": current.version, "strategy": rec.strategy,
                             "items": items, "elapsed_ms": round(1000 * (time.perf_counter() - start), 3)})  # fmt: skip

    @app.post("/predict")
    async def predict(body: PredictRequest):
        current = model()
        users = [p.user_id for p in body.pairs]
        items = [p.item_id for p in body.pairs]
        return JSONResponse({"model_version": current.version, "predictions": current.predict(users, items)})

    return app
