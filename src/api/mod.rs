//! The API: axum routes, SSHSIG request signing, DTOs, metrics and webhooks.
