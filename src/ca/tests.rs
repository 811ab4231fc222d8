//! The CA keys on disk, and what each kind of certificate says and is checked for.

use super::*;

#[test]
fn ensure_creates_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, created) = CaKeys::ensure(dir.path()).unwrap();
    assert_eq!(created.len(), 3);
    for name in NAMES {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
        assert!(dir.path().join(format!("{name}.pub")).exists());
    }
    let (again, created) = CaKeys::ensure(dir.path()).unwrap();
    assert!(created.is_empty(), "never overwrites");
    assert_eq!(keys.user_ca(), again.user_ca());
    assert_ne!(keys.user_ca(), keys.host_ca());
    let dbg = format!("{keys:?}");
    assert!(dbg.contains("SHA256:") && !dbg.contains("PRIVATE"), "{dbg}");
}

#[test]
fn loose_permissions_refused() {
    let dir = tempfile::tempdir().unwrap();
    CaKeys::ensure(dir.path()).unwrap();
    let p = dir.path().join("host_ca");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = CaKeys::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn user_cert_round_trip_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, _) = CaKeys::ensure(dir.path()).unwrap();
    let cert = cert_by(&keys, &[EXT_PTY]);
    assert_eq!(cert.key_id(), "jitgate:42:alice");
    assert_eq!(cert.valid_principals(), ["alice".to_string()]);
    assert_eq!(request_id_of(&cert), Some(42));
    assert!(cert.extensions().get(EXT_PTY).is_some());
    assert!(cert.extensions().get(EXT_PORT_FORWARDING).is_none());
    assert_eq!(keys.validate_user_cert(&cert, 1500), Ok(()));
    // A host certificate is not a user certificate, even from the right key.
    let host_cert = keys
        .sign_host(
            generate_ed25519().public_key(),
            &["db1".into()],
            1,
            1000,
            2000,
        )
        .unwrap();
    assert!(keys.validate_host_cert(&host_cert, "db1", 1500).is_ok());
    assert!(keys.validate_host_cert(&host_cert, "db2", 1500).is_err());
}

/// A user certificate for request 42 by `by`, valid from 1000 to 2000, with `extensions`.
fn cert_by(by: &CaKeys, extensions: &[&str]) -> Certificate {
    let engineer = generate_ed25519();
    by.sign_user(&UserCertSpec {
        key: engineer.public_key(),
        serial: 7,
        request_id: 42,
        user: "alice",
        valid_after: 1000,
        valid_before: 2000,
        extensions,
    })
    .unwrap()
}

/// Our CA keys, a certificate they signed and one another CA signed (the same claims), and
/// the folders that hold both CAs' keys.
fn ours_and_foreign() -> (CaKeys, Certificate, Certificate, [tempfile::TempDir; 2]) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (keys, _) = CaKeys::ensure(dirs[0].path()).unwrap();
    let (other, _) = CaKeys::ensure(dirs[1].path()).unwrap();
    let (ours, foreign) = (cert_by(&keys, &[]), cert_by(&other, &[]));
    (keys, ours, foreign, dirs)
}

#[test]
fn each_user_certificate_failure_has_its_own_reason() {
    let (keys, ours, foreign, _dirs) = ours_and_foreign();
    let host = keys
        .sign_host(
            generate_ed25519().public_key(),
            &["db1".into()],
            1,
            1000,
            2000,
        )
        .unwrap();
    // A certificate of the right kind signed by the user CA's key as a host CA.
    let wrong_kind = {
        let mut b = builder(generate_ed25519().public_key(), 1000, 2000).unwrap();
        b.cert_type(CertType::Host).unwrap();
        b.valid_principal("alice").unwrap();
        b.sign(&keys.user).unwrap()
    };
    let not_ours = "certificate not signed by this bastion's user CA";
    for (cert, now, want) in [
        (&ours, 1500, Ok(())),
        (&ours, 1000, Ok(())),
        (
            &ours,
            999,
            Err("certificate not valid before 1970-01-01 00:16:40 UTC"),
        ),
        (
            &ours,
            2000,
            Err("certificate expired at 1970-01-01 00:33:20 UTC"),
        ),
        (
            &ours,
            2500,
            Err("certificate expired at 1970-01-01 00:33:20 UTC"),
        ),
        // The CA is checked first: a foreign certificate out of its window is foreign.
        (&foreign, 1500, Err(not_ours)),
        (&foreign, 2500, Err(not_ours)),
        (&host, 1500, Err(not_ours)),
        (&wrong_kind, 1500, Err("not a user certificate")),
    ] {
        assert_eq!(
            keys.validate_user_cert(cert, now),
            want.map_err(String::from),
            "{} at {now}",
            cert.key_id()
        );
    }
}

#[test]
fn a_request_is_read_only_from_the_user_cas_certificates() {
    let (keys, ours, foreign, _dirs) = ours_and_foreign();
    assert_eq!(request_id_of(&foreign), Some(42), "the claim is there");
    for (cert, want) in [(&ours, Some(42)), (&foreign, None)] {
        assert_eq!(keys.request_of_user_cert(cert), want, "{}", cert.key_id());
    }
    // Window does not matter: an expired certificate of ours still names its request.
    assert!(keys.validate_user_cert(&ours, 5000).is_err());
    assert_eq!(keys.request_of_user_cert(&ours), Some(42));
}

#[test]
fn target_certificates_carry_only_what_the_rule_allows() {
    let dir = tempfile::tempdir().unwrap();
    let (keys, _) = CaKeys::ensure(dir.path()).unwrap();
    let rule = |pty: bool, ports: bool, agent: bool, x11: bool| AccessRule {
        allow_port_forwarding: ports,
        allow_agent_forwarding: agent,
        allow_x11: x11,
        allow_pty: pty,
        ..AccessRule::bare()
    };
    for (rule, want) in [
        (rule(false, false, false, false), vec![EXT_USER_RC]),
        (rule(true, false, false, false), vec![EXT_PTY, EXT_USER_RC]),
        (
            rule(false, true, true, false),
            vec![EXT_AGENT_FORWARDING, EXT_PORT_FORWARDING, EXT_USER_RC],
        ),
        (
            rule(true, true, true, true),
            vec![
                EXT_X11_FORWARDING,
                EXT_AGENT_FORWARDING,
                EXT_PORT_FORWARDING,
                EXT_PTY,
                EXT_USER_RC,
            ],
        ),
    ] {
        let key = generate_ed25519();
        let cert = keys
            .sign_target(
                key.public_key(),
                "root",
                "t",
                &target_extensions(&rule),
                1,
                1000,
                2000,
            )
            .unwrap();
        let got: Vec<&str> = cert.extensions().keys().map(String::as_str).collect();
        assert_eq!(got, want, "{rule:?}");
    }
}
