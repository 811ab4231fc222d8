//! Table tests for the access checks.
