"""Deployments carry the crons of conf/deploy and register with a real Prefect server."""
from __future__ import annotations

import asyncio

import pytest

pytestmark = pytest.mark.prefect


def test_deployments_register_with_their_crons(prefect_server):
    from prefect.client.orchestration import get_client

    from flows.deployments import build_deployments
    from nlp_suite.config import load_config

    schedules = load_config().deploy.schedules
    deployments = build_deployments(["train.epochs=1"])
    ids = [deployment.apply() for deployment in deployments]

    async def read():
        async with get_client() as client:
            return [await client.read_deployment(i) for i in ids]

    registered = {d.name: d for d in asyncio.run(read())}
    assert set(registered) == {"ingest", "score", "rescore", "alerts", "recommend", "train-sentiment"}
    assert registered["alerts"].schedules[0].schedule.cron == schedules.alerts
    assert registered["recommend"].schedules[0].schedule.cron == schedules.recommend
    assert registered["train-sentiment"].parameters == {"overrides": ["train.epochs=1", "task=sentiment"]}
    assert registered["score"].parameters == {"overrides": ["train.epochs=1", "score.scope=new"]}
    assert registered["rescore"].parameters == {"overrides": ["train.epochs=1", "score.scope=backfill"]}
    limit = registered["rescore"].global_concurrency_limit
    assert registered["rescore"].concurrency_limit == 1 or (limit is not None and limit.limit == 1)
