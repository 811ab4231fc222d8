//! The bastion's identity towards engineers: the host certificate's principals (its
//! configured hostname and listen address) and the ciphers it offers.

use std::path::PathBuf;

use super::lab::{Lab, output, text};

/// An OpenSSH config for alice through `lab`, with `first` placed before the lab's own
/// `Host *` block so its settings win.
fn config_with(lab: &Lab, name: &str, first: &str) -> PathBuf {
    let common = std::fs::read_to_string(&lab.ssh_config).unwrap();
    let path = lab.path().join(name);
    std::fs::write(&path, format!("{first}\n{common}")).unwrap();
    path
}

/// A known_hosts file holding only the host CA, trusted for `pattern`.
fn known_hosts_for(lab: &Lab, name: &str, pattern: &str) -> PathBuf {
    let line = lab.ca.known_hosts_line();
    let rest = line
        .strip_prefix("@cert-authority * ")
        .expect("a CA line for every host");
    let path = lab.path().join(name);
    std::fs::write(&path, format!("@cert-authority {pattern} {rest}\n")).unwrap();
    path
}

/// `ssh -F config -J alice@bastion root@db1 <command>`.
fn ssh_via(lab: &Lab, config: &PathBuf, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("ssh");
    c.arg("-F")
        .arg(config)
        .arg("-J")
        .arg(format!("alice@127.0.0.1:{}", lab.port))
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn host_certificate_names_the_configured_hostname_and_listen_address() {
    let lab = Lab::start_named("bastion.jitgate.test").await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    // The targets keep the lab's `@cert-authority *`; only the jump hop changes.
    let lab_known = lab.path().join("known_hosts");
    let jump = |alias: Option<&str>, known: &PathBuf| {
        let alias = alias.map_or(String::new(), |a| format!("  HostKeyAlias {a}\n"));
        format!(
            "Host 127.0.0.1\n{alias}  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n\
             Host db1\n  UserKnownHostsFile {}\n",
            known.display(),
            lab_known.display()
        )
    };

    // By its configured name, with the CA trusted for that name only.
    let named = known_hosts_for(&lab, "known_named", "bastion.jitgate.test");
    let config = config_with(
        &lab,
        "ssh_config_named",
        &jump(Some("bastion.jitgate.test"), &named),
    );
    let out = output(ssh_via(&lab, &config, &["root@db1", "echo by-name"]), 60).await;
    assert_eq!(text(&out.stdout), "by-name\n", "{}", text(&out.stderr));

    // By its listen address, with the CA trusted for that address only.
    let by_ip = known_hosts_for(&lab, "known_ip", "[127.0.0.1]:*");
    let config = config_with(&lab, "ssh_config_ip", &jump(None, &by_ip));
    let out = output(ssh_via(&lab, &config, &["root@db1", "echo by-ip"]), 60).await;
    assert_eq!(text(&out.stdout), "by-ip\n", "{}", text(&out.stderr));

    // Any other name fails, even with the CA trusted for every host: not a principal.
    let any = known_hosts_for(&lab, "known_any", "*");
    let config = config_with(
        &lab,
        "ssh_config_other",
        &jump(Some("other.jitgate.test"), &any),
    );
    let out = output(ssh_via(&lab, &config, &["root@db1", "echo no"]), 60).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert_eq!(text(&out.stdout), "", "{err}");
    assert!(err.contains("Host key verification failed."), "{err}");
    assert!(err.contains("name is not a listed principal"), "{err}");
}

/// The ciphers `ssh -v` reports for one connection, both directions.
fn ciphers(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|l| l.split_once("debug1: kex: ")?.1.split_once(" cipher: "))
        .map(|(_, rest)| rest.split_whitespace().next().unwrap_or(""))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_hops_negotiate_aes_gcm_and_refuse_a_chacha_only_client() {
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    const OFFER: &str = "Their offer: aes128-gcm@openssh.com,aes256-gcm@openssh.com";

    // ProxyJump passes -v on: the jump's log comes first, then the target hop's.
    let out = output(lab.ssh(&["-v", "root@db1", "echo gcm"]), 60).await;
    let err = text(&out.stderr);
    assert_eq!(text(&out.stdout), "gcm\n", "{err}");
    let (jump, target) = err
        .split_once("Authenticating to db1:22 as 'root'")
        .unwrap_or_else(|| panic!("no target hop in {err}"));
    assert!(jump.contains("as 'alice'"), "{err}");
    // OpenSSH's first AES-GCM pick, in both directions of both hops.
    assert_eq!(ciphers(jump), ["aes128-gcm@openssh.com"; 2], "{err}");
    assert_eq!(ciphers(target), ["aes128-gcm@openssh.com"; 2], "{err}");

    // The other offered cipher works when the client asks only for it.
    let out = output(
        lab.ssh(&[
            "-v",
            "-o",
            "Ciphers=aes256-gcm@openssh.com",
            "root@db1",
            "echo gcm256",
        ]),
        60,
    )
    .await;
    let err = text(&out.stderr);
    assert_eq!(text(&out.stdout), "gcm256\n", "{err}");
    let (_, target) = err.split_once("Authenticating to db1:22").unwrap();
    assert_eq!(ciphers(target), ["aes256-gcm@openssh.com"; 2], "{err}");

    // A client that speaks only ChaCha20-Poly1305 is refused at the jump...
    let mut direct = tokio::process::Command::new("ssh");
    direct
        .arg("-F")
        .arg(&lab.ssh_config)
        .args(["-o", "Ciphers=chacha20-poly1305@openssh.com"])
        .args(["-p", &lab.port.to_string(), "alice@127.0.0.1", "true"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = output(direct, 60).await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert!(err.contains("no matching cipher found"), "{err}");
    assert!(err.contains(OFFER), "{err}");
    assert!(!err.contains("jump host"), "{err}");

    // ...and at the target hop inside it (-o reaches only the outer ssh, not the jump).
    let out = output(
        lab.ssh(&[
            "-o",
            "Ciphers=chacha20-poly1305@openssh.com",
            "root@db1",
            "echo no",
        ]),
        60,
    )
    .await;
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert_eq!(text(&out.stdout), "", "{err}");
    assert!(err.contains("no matching cipher found"), "{err}");
    assert!(err.contains(OFFER), "{err}");
}
