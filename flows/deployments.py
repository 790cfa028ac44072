"""Scheduled deployments from conf/deploy, served against a running `prefect server start`."""
from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron

from flows.alerts import alerts
from flows.ingest import ingest
from flows.recommend import recommend
from flows.score import score
from flows.train import train
from nlp_suite.config import load_config


def build_deployments(overrides: list[str] | None = None) -> list:
    """One deployment per flow with its cron from conf/deploy/<name>.yaml."""
    overrides = list(overrides or [])
    deploy = load_config(overrides).deploy

    def cron(name: str) -> list[Cron]:
        return [Cron(deploy.schedules[name], timezone=deploy.timezone)]

    params = {"overrides": overrides}
    return [
        ingest.to_deployment(name="ingest", schedules=cron("ingest"), parameters=params),
        # New documents and rescoring after a promotion are separate deployments, so a long backfill runs in
        # the background and never delays fresh documents; one run of each at a time.
        score.to_deployment(name="score", schedules=cron("score"), concurrency_limit=1,
                            parameters={"overrides": overrides + ["score.scope=new"]}),
        score.to_deployment(name="rescore", schedules=cron("rescore"), concurrency_limit=1,
                            parameters={"overrides": overrides + ["score.scope=backfill"]}),
        alerts.to_deployment(name="alerts", schedules=cron("alerts"), parameters=params),
        recommend.to_deployment(name="recommend", schedules=cron("recommend"), parameters=params),
        train.to_deployment(name="train-sentiment", schedules=cron("train"),
                            parameters={"overrides": overrides + ["task=sentiment"]}),
    ]


def serve_all(overrides: list[str] | None = None) -> None:
    """Block and run the schedules; schedules stay active when this process stops."""
    serve(*build_deployments(overrides), pause_on_shutdown=False)


if __name__ == "__main__":
    serve_all()
