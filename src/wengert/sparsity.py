"""Sparsity patterns, colouring and sparse derivatives (placeholder)."""
