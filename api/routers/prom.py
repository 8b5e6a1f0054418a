"""GET /metrics: the Prometheus exposition of this app's registry."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from api.observability import METRICS_PATH

# Open by default (scrapers usually sit inside the network); api/app.py adds the key check when
# TRAINYARD_METRICS_NEED_KEY is set. The numbers are the whole service's, not one tenant's.
router = APIRouter(tags=["health"])


@router.get(METRICS_PATH, response_class=Response)
def read_metrics(request: Request) -> Response:
    """Prometheus text, or OpenMetrics when the scraper asks for it; a sync route: the scrape reads SQL."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(request.app.state.metrics_registry), media_type=content_type)
