"""dashboard views and scoring runs

Read-only SQL views for Grafana / Metabase / Superset (db/dashboards/README.md), on SQLite and PostgreSQL:

- `sentiment_timeseries`: one row per (UTC day, entity) in Grafana's long format: `time` (day start, UTC),
  `metric` (entity), `documents`, `negative`, `neutral`, `positive`, `negative_share`.
- `open_alerts`: alerts with status 'open' and `evidence_count` (length of the `evidence` JSON array).
- `entity_summary`: per entity: documents, scored documents, negative share overall and over the last 7 UTC days
  of data (the day of the newest `documents.published_at` and the 6 days before it, so it works on historical
  data), open alerts and the last `published_at`.

Sentiment is always the one of the ACTIVE sentiment model (task 'sentiment', status 'active'; the newest such id
if several are, like nlp_suite.ui.queries.active_sentiment_version); scores of other versions are ignored.
Open alerts are listed whatever model raised them (an alert stays open until someone closes it);
`model_version_id` tells which one.

Also adds `scoring_runs` (nlp_suite.storage.models.ScoringRun).

Views are not in the ORM metadata; db/migrations/env.py keeps autogenerate from reading them as tables.
A later migration that alters or rebuilds a table these views read (documents, document_entities,
sentiment_scores, model_versions, alerts) must drop the views first and create them again afterwards:
PostgreSQL refuses to change a column a view uses, and SQLite's batch mode (copy, drop, rename) fails on the
rename while a view names the dropped table. Recreated views lose their PostgreSQL grants: run
db/dashboards/readonly_role.sql again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

VIEWS = ("sentiment_timeseries", "open_alerts", "entity_summary")

# The dialect-specific pieces; everything else is SQL both SQLite and PostgreSQL accept.
_DIALECT = {
    "postgresql": {
        "float": "DOUBLE PRECISION",
        # timestamptz at 00:00 UTC of the row's UTC day, whatever the session's TimeZone is.
        "day": "date_trunc('day', d.published_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
        # 00:00 UTC of the 6th day before the newest day: the last 7 days are [since, newest].
        "since": "(date_trunc('day', MAX(published_at) AT TIME ZONE 'UTC') - INTERVAL '6 days') AT TIME ZONE 'UTC'",
        "evidence_count": "CASE WHEN json_typeof(a.evidence) = 'array' THEN json_array_length(a.evidence) ELSE 0 END",
    },
    "sqlite": {
        "float": "REAL",
        # SQLite keeps naive UTC text ('YYYY-MM-DD HH:MM:SS.ffffff'), so the day start is text too.
        "day": "strftime('%Y-%m-%d 00:00:00', d.published_at)",
        # 'YYYY-MM-DD' compares as text with the stored values: anything on or after that day is >= it.
        "since": "date(MAX(published_at), '-6 days')",
        "evidence_count": "COALESCE(json_array_length(a.evidence), 0)",
    },
}

ACTIVE_SENTIMENT = "(SELECT MAX(id) FROM model_versions WHERE task = 'sentiment' AND status = 'active')"


def _share(numerator: str, denominator: str, sql: dict[str, str]) -> str:
    """numerator / denominator as a float, NULL when the denominator is 0."""
    return f"CAST({numerator} AS {sql['float']}) / NULLIF({denominator}, 0)"


def _views(dialect: str) -> dict[str, str]:
    """CREATE VIEW statements for one dialect."""
    if dialect not in _DIALECT:
        raise NotImplementedError(f"dashboard views exist for {sorted(_DIALECT)}, not {dialect!r}")
    sql = _DIALECT[dialect]
    count = lambda label: f"SUM(CASE WHEN s.label = '{label}' THEN 1 ELSE 0 END)"  # noqa: E731
    scored_7d = "SUM(CASE WHEN p.label IS NOT NULL AND p.published_at >= h.since THEN 1 ELSE 0 END)"
    negative_7d = "SUM(CASE WHEN p.label = 'negative' AND p.published_at >= h.since THEN 1 ELSE 0 END)"
    negative_all = "SUM(CASE WHEN p.label = 'negative' THEN 1 ELSE 0 END)"
    return {
        "sentiment_timeseries": f"""
CREATE VIEW sentiment_timeseries AS
SELECT
    {sql['day']} AS time,
    de.entity AS metric,
    COUNT(*) AS documents,
    {count('negative')} AS negative,
    {count('neutral')} AS neutral,
    {count('positive')} AS positive,
    {_share(count('negative'), 'COUNT(*)', sql)} AS negative_share
FROM document_entities de
JOIN documents d ON d.id = de.document_id
JOIN sentiment_scores s ON s.document_id = d.id
WHERE s.model_version_id = {ACTIVE_SENTIMENT}
  AND d.published_at IS NOT NULL
GROUP BY 1, 2
""",
        "open_alerts": f"""
CREATE VIEW open_alerts AS
SELECT
    a.id,
    a.entity,
    a.bucket_start,
    a.bucket_end,
    a.severity,
    a.negative_count,
    a.total_count,
    a.negative_share,
    a.baseline_share,
    a.z_score,
    a.p_value,
    a.model_version_id,
    a.created_at,
    a.notified_at,
    {sql['evidence_count']} AS evidence_count
FROM alerts a
WHERE a.status = 'open'
""",
        "entity_summary": f"""
CREATE VIEW entity_summary AS
WITH horizon AS (
    SELECT {sql['since']} AS since FROM documents
),
per_document AS (
    SELECT de.entity, d.published_at, s.label
    FROM document_entities de
    JOIN documents d ON d.id = de.document_id
    LEFT JOIN sentiment_scores s ON s.document_id = d.id AND s.model_version_id = {ACTIVE_SENTIMENT}
),
alert_counts AS (
    SELECT entity, COUNT(*) AS open_alerts FROM alerts WHERE status = 'open' GROUP BY entity
)
SELECT
    p.entity,
    COUNT(*) AS documents,
    COUNT(p.label) AS scored_documents,
    {_share(negative_all, 'COUNT(p.label)', sql)} AS negative_share,
    {scored_7d} AS scored_documents_7d,
    {_share(negative_7d, scored_7d, sql)} AS negative_share_7d,
    COALESCE(MAX(ac.open_alerts), 0) AS open_alerts,
    MAX(p.published_at) AS last_published_at
FROM per_document p
CROSS JOIN horizon h
LEFT JOIN alert_counts ac ON ac.entity = p.entity
GROUP BY p.entity
""",
    }


def upgrade() -> None:
    op.create_table('scoring_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('documents', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('docs_per_second', sa.Float(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_scoring_runs_model_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scoring_runs'))
    )
    for statement in _views(op.get_context().dialect.name).values():
        op.execute(statement)


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('scoring_runs')
