"""Shared encoder, pooling and heads."""
