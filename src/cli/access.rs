//! Engineers' and approvers' commands: request, requests, show, approve, deny, revoke,
//! login and ssh-config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use jitgate::api::dto::*;

use super::{Global, UsageError, client, home, identity_path, output};

#[derive(Args, Debug)]
pub struct RequestArgs {
    /// Inventory host name.
    #[arg(long)]
    host: String,
    /// The account on the host.
    #[arg(long)]
    login: String,
    /// How long access lasts once approved: 90s, 15m, 1h.
    #[arg(long, default_value = "15m")]
    ttl: String,
    /// Why (ticket, incident).
    #[arg(long, default_value = "")]
    reason: String,
    /// Wait until the request is decided.
    #[arg(long)]
    wait: bool,
}

pub async fn request(g: &Global, a: RequestArgs) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let body = CreateRequest {
        host: a.host,
        login: a.login,
        ttl: a.ttl,
        reason: a.reason,
    };
    let mut req: RequestView = c.post("/v1/requests", &body).await?;
    if a.wait && req.state == "pending" {
        eprintln!(
            "request {} is pending; waiting for {} approval(s)…",
            req.id, req.approvals_needed
        );
        while req.state == "pending" {
            tokio::time::sleep(Duration::from_secs(1)).await;
            req = c.get(&format!("/v1/requests/{}", req.id)).await?;
        }
    }
    if g.json {
        output::json(&req)?;
    } else {
        print_outcome(&req);
    }
    Ok(if matches!(req.state.as_str(), "approved" | "pending") {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_outcome(r: &RequestView) {
    let now = jitgate::model::now();
    match r.state.as_str() {
        "approved" => {
            let until = r
                .expires_at
                .map(|t| output::short_time(t, now))
                .unwrap_or_default();
            println!(
                "request {} approved: {} as {} until {until}",
                r.id, r.host, r.login
            );
            if let (Some(end), Some(hours)) = (r.hours_end, &r.hours) {
                println!(
                    "note: access is allowed only {hours}; certificates and sessions end at {}",
                    output::short_time(end, now)
                );
            }
            println!("next: jitgate login {}", r.id);
        }
        "pending" => {
            println!(
                "request {} pending: {} as {} for {} needs {} approval(s) ({} so far)",
                r.id,
                r.host,
                r.login,
                r.ttl,
                r.approvals_needed,
                r.approvals_counted()
            );
            println!(
                "approvers see it with: jitgate requests --pending; wait with: jitgate show {}",
                r.id
            );
        }
        state => {
            let why = r
                .decision_reason
                .as_deref()
                .map(|w| format!(": {}", output::clean(w)))
                .unwrap_or_default();
            let by = r
                .decided_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default();
            println!("request {} {state}{by}{why}", r.id);
            if state == "expired" {
                println!(
                    "it expired undecided at {}; run jitgate request --host {} --login {} again",
                    output::time(r.pending_until),
                    r.host,
                    r.login
                );
            }
        }
    }
}

pub async fn requests(g: &Global, pending: bool) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let path = if pending {
        "/v1/requests?pending=true"
    } else {
        "/v1/requests"
    };
    let list: Vec<RequestView> = c.get(path).await?;
    if g.json {
        output::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!(
            "{}",
            if pending {
                "no pending requests"
            } else {
                "no requests"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let now = jitgate::model::now();
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.state.clone(),
                r.requester.clone(),
                format!("{}@{}", r.login, r.host),
                r.ttl.clone(),
                format!("{}/{}", r.approvals_counted(), r.approvals_needed),
                output::short_time(r.created_at, now),
                r.reason.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "STATE",
            "REQUESTER",
            "ACCESS",
            "TTL",
            "APPROVALS",
            "CREATED",
            "REASON",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn show(g: &Global, id: i64) -> anyhow::Result<ExitCode> {
    let r: RequestView = client(g)?.get(&format!("/v1/requests/{id}")).await?;
    if g.json {
        output::json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("request    {}", r.id);
    println!(
        "state      {}{}",
        r.state,
        if r.flagged {
            " (flagged for review)"
        } else {
            ""
        }
    );
    println!("requester  {}", r.requester);
    println!("access     {}@{} for {}", r.login, r.host, r.ttl);
    println!("reason     {}", output::clean(&r.reason));
    println!(
        "rule       {} ({} approval(s) needed)",
        r.rule, r.approvals_needed
    );
    if let Some(hours) = &r.hours {
        match r.hours_end {
            Some(end) => println!("hours      {hours} (access ends at {})", output::time(end)),
            None => println!("hours      {hours}"),
        }
    }
    println!("created    {}", output::time(r.created_at));
    for a in &r.approvals {
        let c = a
            .comment
            .as_deref()
            .map(|c| format!(": {}", output::clean(c)))
            .unwrap_or_default();
        let stale = if a.counts {
            ""
        } else {
            " (no longer an approver: does not count)"
        };
        println!(
            "approved   by {} at {}{c}{stale}",
            a.approver,
            output::time(a.at)
        );
    }
    if let Some(t) = r.expires_at {
        println!("ends       {}", output::time(t));
    } else if r.state == "pending" {
        println!("undecided  expires {}", output::time(r.pending_until));
    }
    if let Some(by) = &r.decided_by {
        println!(
            "decided    by {by}: {}",
            output::clean(r.decision_reason.as_deref().unwrap_or(""))
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn approve(g: &Global, id: i64, comment: Option<String>) -> anyhow::Result<ExitCode> {
    let r: RequestView = client(g)?
        .post(
            &format!("/v1/requests/{id}/approve"),
            &DecisionBody {
                comment,
                reason: None,
            },
        )
        .await?;
    if g.json {
        output::json(&r)?;
    } else if r.state == "approved" {
        println!(
            "request {id} approved; {} can run: jitgate login {id}",
            r.requester
        );
    } else {
        println!(
            "approval recorded for request {id}: {} of {} approvals",
            r.approvals_counted(),
            r.approvals_needed
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn deny(g: &Global, id: i64, reason: String) -> anyhow::Result<ExitCode> {
    let r: RequestView = client(g)?
        .post(
            &format!("/v1/requests/{id}/deny"),
            &DecisionBody {
                comment: None,
                reason: Some(reason),
            },
        )
        .await?;
    if g.json {
        output::json(&r)?;
    } else {
        println!("request {id} denied");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(g: &Global, id: i64, reason: Option<String>) -> anyhow::Result<ExitCode> {
    let r: RequestView = client(g)?
        .post(
            &format!("/v1/requests/{id}/revoke"),
            &DecisionBody {
                comment: None,
                reason,
            },
        )
        .await?;
    if g.json {
        output::json(&r)?;
    } else {
        println!(
            "request {id} revoked; its certificate no longer opens the bastion and its sessions are closing"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the certificate, a per-request ssh config beside it, and prints the command.
pub async fn login(g: &Global, id: i64, out: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let c = client(g)?;
    let cert: CertificateView = c
        .post(
            &format!("/v1/requests/{id}/certificate"),
            &serde_json::json!({}),
        )
        .await?;
    let dir = home()?.join(".ssh/jitgate");
    let cert_path = out.unwrap_or_else(|| dir.join(format!("{id}-cert.pub")));
    let folder = cert_path.parent().unwrap_or(Path::new(".")).to_path_buf();
    std::fs::create_dir_all(&folder)?;
    std::fs::write(&cert_path, format!("{}\n", cert.certificate.trim()))?;
    // The newest certificate per host, for the `ssh-config --install` blocks (`%n-cert.pub`).
    std::fs::create_dir_all(&dir)?;
    let per_host = dir.join(format!("{}-cert.pub", cert.host));
    if per_host != cert_path {
        std::fs::write(&per_host, format!("{}\n", cert.certificate.trim()))?;
    }
    // Named for the request, never plain `known_hosts`: `--out ~/.ssh/x-cert.pub` must not
    // replace the engineer's own file.
    let known_hosts = cert_path.with_file_name(format!("{id}.known_hosts"));
    std::fs::write(&known_hosts, format!("{}\n", cert.bastion.known_hosts_line))?;
    let identity = identity_path(g)?;
    let config_path = cert_path.with_file_name(format!("{id}.ssh_config"));
    // `ssh -J` hands `-F` to the jump process, so one file serves both hops.
    let config = format!(
        "# jitgate request {id}: {login}@{host}, valid until {until}\nHost *\n    IdentityFile {identity}\n    CertificateFile {cert}\n    IdentitiesOnly yes\n    UserKnownHostsFile {known_hosts}\n    StrictHostKeyChecking yes\n",
        login = cert.login,
        host = cert.host,
        until = output::time(cert.valid_before),
        identity = identity.display(),
        cert = cert_path.display(),
        known_hosts = known_hosts.display(),
    );
    std::fs::write(&config_path, config)?;
    let command = format!(
        "ssh -F {} -J {}@{}:{} {}@{}",
        config_path.display(),
        cert.bastion.user,
        cert.bastion.hostname,
        cert.bastion.ssh_port,
        cert.login,
        cert.host
    );
    if g.json {
        output::json(&serde_json::json!({
            "certificate_file": cert_path, "ssh_config": config_path, "command": command,
            "serial": cert.serial, "valid_after": cert.valid_after, "valid_before": cert.valid_before,
            "host": cert.host, "login": cert.login,
        }))?;
    } else {
        println!(
            "certificate for request {id} written to {}",
            cert_path.display()
        );
        println!(
            "valid until {} (serial {})",
            output::time(cert.valid_before),
            cert.serial
        );
        println!("connect with:");
        println!("  {command}");
    }
    Ok(ExitCode::SUCCESS)
}

const MARK_BEGIN: &str = "# >>> jitgate >>>";
const MARK_END: &str = "# <<< jitgate <<<";

pub async fn ssh_config(g: &Global, install: bool) -> anyhow::Result<ExitCode> {
    let info: BastionInfo = client(g)?.get("/v1/bastion").await?;
    let identity = identity_path(g)?;
    let ssh = home()?.join(".ssh");
    let certs = ssh.join("jitgate");
    let known_hosts = ssh.join("known_hosts");
    // The bastion hop reads no config (-F /dev/null): every option it needs is here.
    let block = format!(
        "{MARK_BEGIN}\n# Hosts reached through the jitgate bastion with the newest certificate for each.\nHost {hosts}\n    IdentityFile {id}\n    CertificateFile {certs}/%n-cert.pub\n    IdentitiesOnly yes\n    UserKnownHostsFile {kh}\n    StrictHostKeyChecking yes\n    ProxyCommand ssh -F /dev/null -o IdentityFile={id} -o CertificateFile={certs}/%n-cert.pub -o IdentitiesOnly=yes -o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes -p {port} -W %h:%p {user}@{bastion}\n{MARK_END}\n",
        hosts = info.hosts.join(" "),
        id = identity.display(),
        certs = certs.display(),
        kh = known_hosts.display(),
        port = info.ssh_port,
        user = info.user,
        bastion = info.hostname,
    );
    if !install {
        println!("# add to ~/.ssh/config:\n{block}");
        println!("# add to ~/.ssh/known_hosts:\n{}", info.known_hosts_line);
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&ssh)?;
    let config_path = ssh.join("config");
    let old = std::fs::read_to_string(&config_path).unwrap_or_default();
    std::fs::write(&config_path, replace_block(&old, &block)?)?;
    let kh_path = known_hosts;
    let kh = std::fs::read_to_string(&kh_path).unwrap_or_default();
    if !kh.lines().any(|l| l.trim() == info.known_hosts_line.trim()) {
        let mut kh = kh;
        if !kh.is_empty() && !kh.ends_with('\n') {
            kh.push('\n');
        }
        kh.push_str(&info.known_hosts_line);
        kh.push('\n');
        std::fs::write(&kh_path, kh)?;
    }
    println!(
        "installed the jitgate block in {} and the host CA in {}",
        config_path.display(),
        kh_path.display()
    );
    println!("after jitgate login ID, connect with: ssh LOGIN@HOST");
    Ok(ExitCode::SUCCESS)
}

/// Puts `block` in place of an earlier jitgate block, or at the top (ssh uses first match).
fn replace_block(old: &str, block: &str) -> anyhow::Result<String> {
    match (old.find(MARK_BEGIN), old.find(MARK_END)) {
        (Some(b), Some(e)) if b < e => {
            let end = e + MARK_END.len();
            let rest = old[end..].strip_prefix('\n').unwrap_or(&old[end..]);
            Ok(format!("{}{block}{rest}", &old[..b]))
        }
        (None, None) => Ok(format!("{block}{old}")),
        _ => Err(UsageError(
            "~/.ssh/config has a damaged jitgate block; remove it and try again".into(),
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::replace_block;

    #[test]
    fn block_is_replaced_not_duplicated() {
        let block = "# >>> jitgate >>>\nA\n# <<< jitgate <<<\n";
        let once = replace_block("Host x\n", block).unwrap();
        assert_eq!(once, format!("{block}Host x\n"));
        let twice = replace_block(&once, &block.replace('A', "B")).unwrap();
        assert_eq!(twice.matches(">>> jitgate").count(), 1);
        assert!(twice.contains("\nB\n") && twice.ends_with("Host x\n"));
    }
}
