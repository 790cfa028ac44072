"""Input data: the embedded sample corpus, tolerant file readers and validated ingestion into SQL."""
