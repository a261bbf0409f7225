"""Audit reports for people and tools: self-contained HTML, SARIF 2.1.0 (and PDF where a library allows)."""
