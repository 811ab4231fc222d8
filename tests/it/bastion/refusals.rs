//! What the audit log says of logins the bastion refuses before authentication.

use std::path::PathBuf;

use jitgate::ca::{CaKeys, UserCertSpec};
use jitgate::model::now;

use super::lab::{Lab, output, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_certificate_is_audited_as_nobodys_claim() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    // Mallory's own CA signs a certificate naming alice and alice's request.
    let forged_dir = lab.path().join("mallory-ca");
    let (mallory, _) = CaKeys::ensure(&forged_dir).unwrap();
    let public = ssh_key::PublicKey::read_openssh_file(lab.key.with_extension("pub")).unwrap();
    let t = now() as u64;
    let forged = mallory
        .sign_user(&UserCertSpec {
            key: &public,
            serial: 1,
            request_id: id,
            user: "alice",
            valid_after: t - 60,
            valid_before: t + 600,
            extensions: &[],
        })
        .unwrap();
    let cert_path = PathBuf::from(format!("{}-cert.pub", lab.key.display()));
    std::fs::write(cert_path, forged.to_openssh().unwrap() + "\n").unwrap();
    let out = output(lab.ssh(&["root@db1", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));

    let events = lab.store.audit_events(None).await.unwrap();
    let refused: Vec<_> = events
        .iter()
        .map(|e| &e.event)
        .filter(|e| e.kind == "bastion.refused")
        .collect();
    let foreign = refused
        .iter()
        .find(|e| {
            e.data.get("reason").map(String::as_str)
                == Some("certificate not signed by this bastion's user CA")
        })
        .unwrap_or_else(|| panic!("no refusal of the foreign certificate in {refused:#?}"));
    // Nobody authenticated: the actor is unknown, the typed name only a claim, and the
    // request the forged certificate names is not credited.
    assert_eq!(foreign.actor, "unknown");
    assert_eq!(
        foreign.data.get("claimed_user").map(String::as_str),
        Some("alice")
    );
    assert_eq!(foreign.request_id, None);
    // The plain key ssh offers next is refused the same way.
    assert!(
        refused.iter().all(|e| e.actor == "unknown"
            && e.data.get("claimed_user").map(String::as_str) == Some("alice")),
        "{refused:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_certificate_is_refused_and_audited() {
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    // russh refuses a certificate past its window before jitgate's handler sees it.
    let t = now();
    lab.certify(id, t - 600, t - 60).await;
    let out = output(lab.ssh(&["root@db1", "true"]), 60).await;
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    // The connection's end is audited, shortly after it.
    let mut found = None;
    for _ in 0..100 {
        let events = lab.store.audit_events(None).await.unwrap();
        found = events.into_iter().map(|e| e.event).find(|e| {
            e.kind == "bastion.refused"
                && e.data
                    .get("reason")
                    .is_some_and(|r| r.starts_with("no certificate reached jitgate's checks"))
        });
        if found.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reasons = lab.refusals().await;
    let refused = found.unwrap_or_else(|| panic!("not audited: {reasons:#?}"));
    assert_eq!(refused.actor, "unknown");
    assert_eq!(
        refused.data.get("claimed_user").map(String::as_str),
        Some("alice")
    );
    assert!(
        refused.data["reason"].contains("expired"),
        "{:?}",
        refused.data
    );
}
