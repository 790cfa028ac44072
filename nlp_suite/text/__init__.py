"""Tokenization and batching."""
