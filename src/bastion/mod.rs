//! The SSH bastion: the only user of russh.
