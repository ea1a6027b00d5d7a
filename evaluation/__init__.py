"""Evaluation harness: retrieval metrics for each strategy side by side, and a report."""
