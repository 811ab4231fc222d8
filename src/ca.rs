//! Keys and certificate minting.
