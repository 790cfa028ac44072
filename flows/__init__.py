"""Thin Prefect flows over nlp_suite.pipeline; schedules live in flows/deployments.py and conf/deploy."""
