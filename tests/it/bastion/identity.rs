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
