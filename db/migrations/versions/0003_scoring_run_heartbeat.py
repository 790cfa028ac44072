"""scoring run heartbeat

Adds `scoring_runs.heartbeat_at`: the writer stamps it (with the documents committed so far) in the same
transaction as every chunk, so a run's row shows live progress, and a `running` row whose heartbeat is older than
`score.stale_run_minutes` belongs to a process that died (SIGKILL, lost worker); the next scoring run marks it
`abandoned`.

Drops `ix_sentiment_scores_model_version_id`: every score paid a third index insert for it, while the unique
(document_id, model_version_id) index already serves the scoring anti-join, per-document lookups and the
cascade; what filters by version alone (dashboard views, alert loading) aggregates a large share of the table
and scans it anyway. Dropping an index touches no view.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column('scoring_runs', sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
    op.drop_index('ix_sentiment_scores_model_version_id', table_name='sentiment_scores')


def downgrade() -> None:
    op.create_index('ix_sentiment_scores_model_version_id', 'sentiment_scores', ['model_version_id'], unique=False)
    with op.batch_alter_table('scoring_runs', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
