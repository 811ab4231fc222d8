//! Guardrails: compiled rule sets; a command in, a verdict out.
