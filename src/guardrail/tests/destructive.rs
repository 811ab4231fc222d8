//! What each rule of the shipped `destructive` set catches, and what it must let through.

use super::destructive;

/// `(command, rule that must block it)`.
const CAUGHT: &[(&str, &str)] = &[
    ("rm -rf /", "rm-recursive-system"),
    ("rm -rf /*", "rm-recursive-system"),
    ("rm -fr /etc", "rm-recursive-system"),
    ("rm -Rf /usr/", "rm-recursive-system"),
    ("rm -r -f /var", "rm-recursive-system"),
    ("rm --recursive --force /boot", "rm-recursive-system"),
    ("rm -rf /home/*", "rm-recursive-system"),
    ("rm -rf /root", "rm-recursive-system"),
    ("rm -rf /bin /lib", "rm-recursive-system"),
    ("rm -rf ~", "rm-recursive-system"),
    ("rm -rf $HOME/", "rm-recursive-system"),
    ("rm / -rf", "rm-recursive-system"),
    ("rm -rf /tmp/x /", "rm-recursive-system"),
    ("sudo rm -rf /", "rm-recursive-system"),
    ("sudo -u root rm -rf /etc", "rm-recursive-system"),
    ("/bin/rm -rf /", "rm-recursive-system"),
    ("\\rm -rf /", "rm-recursive-system"),
    ("rm -rf \"/\"", "rm-recursive-system"),
    ("rm   -rf\t'/etc'", "rm-recursive-system"),
    ("cd /tmp && rm -rf /", "rm-recursive-system"),
    ("ls; rm -rf /var", "rm-recursive-system"),
    ("true || rm -rf /usr", "rm-recursive-system"),
    ("echo x | xargs rm -rf /", "rm-recursive-system"),
    ("echo $(rm -rf /)", "rm-recursive-system"),
    ("ls\nrm -rf /", "rm-recursive-system"),
    ("if true; then rm -rf /; fi", "rm-recursive-system"),
    ("rm -rf --no-preserve-root /", "rm-recursive-system"),
    ("rm -r --no-preserve-root x", "rm-no-preserve-root"),
    ("mkfs.ext4 /dev/sdb1", "mkfs"),
    ("mkfs -t xfs /dev/vdb", "mkfs"),
    ("sudo mke2fs /dev/sdc", "mkfs"),
    ("wipefs -a /dev/sda", "mkfs"),
    ("dd if=/dev/zero of=/dev/sda bs=1M", "dd-block-device"),
    ("dd if=x.img of=/dev/nvme0n1", "dd-block-device"),
    (
        "sudo dd if=/dev/urandom of=/dev/mapper/vg-root",
        "dd-block-device",
    ),
    ("dd if=a of=/dev/xvda", "dd-block-device"),
    ("cat x.img > /dev/sdb", "redirect-block-device"),
    ("shutdown -h now", "power-off"),
    ("sudo reboot", "power-off"),
    ("halt", "power-off"),
    ("poweroff", "power-off"),
    ("init 0", "power-off"),
    ("sudo init 6", "power-off"),
    ("systemctl poweroff", "power-off"),
    ("systemctl --force reboot", "power-off"),
    ("systemctl halt", "power-off"),
    ("/sbin/shutdown -r +5", "power-off"),
    ("uptime; reboot", "power-off"),
    ("DROP DATABASE prod;", "sql-drop-database"),
    ("psql -c \"drop database app\"", "sql-drop-database"),
    ("DROP TABLE users;", "sql-drop-table"),
    ("drop   table if exists users", "sql-drop-table"),
    ("TRUNCATE users;", "sql-truncate"),
    ("truncate table orders", "sql-truncate"),
    ("DELETE FROM users;", "sql-delete-without-where"),
    ("delete from users", "sql-delete-without-where"),
    (
        "psql -c 'DELETE FROM public.users'",
        "sql-delete-without-where",
    ),
    ("DELETE FROM users u;", "sql-delete-without-where"),
    ("DELETE FROM users RETURNING *;", "sql-delete-without-where"),
    ("chmod -R 777 /", "chmod-recursive-system"),
    ("sudo chmod -R 777 /*", "chmod-recursive-system"),
    ("chown -R nobody /etc", "chmod-recursive-system"),
    (":(){ :|:& };:", "fork-bomb"),
    (":(){ :|: & };:", "fork-bomb"),
    ("bomb(){ bomb|bomb& }; bomb", "fork-bomb"),
    ("iptables -F", "firewall-flush"),
    ("sudo iptables -t nat --flush", "firewall-flush"),
    ("ip6tables -F INPUT", "firewall-flush"),
    ("nft flush ruleset", "firewall-flush"),
    ("kubectl delete namespace prod", "kubectl-delete-namespace"),
    ("kubectl delete ns prod", "kubectl-delete-namespace"),
    (
        "kubectl --context prod delete ns/payments",
        "kubectl-delete-namespace",
    ),
    (
        "kubectl delete --wait=false namespaces a b",
        "kubectl-delete-namespace",
    ),
    ("git push --force", "git-push-force"),
    ("git push -f origin main", "git-push-force"),
    ("git push origin main --force", "git-push-force"),
    ("git push origin +main", "git-push-force"),
    ("git -C repo push -uf origin x", "git-push-force"),
];

/// Commands that must be allowed.
const ALLOWED: &[&str] = &[
    "rm -rf ./build",
    "rm -rf build/",
    "rm -rf /tmp/x/build",
    "rm -rf /var/tmp/cache",
    "rm -rf /home/alice/tmp",
    "rm -f /etc/nginx/sites-enabled/old",
    "rm /etc/motd",
    "echo rm -rf /",
    "ls -la /",
    "grep DROP log",
    "grep -i drop /var/log/postgres.log",
    "echo \"shutdown at 5\"",
    "cat /etc/shutdown.allow",
    "man shutdown",
    "last reboot",
    "journalctl -b -1 | grep reboot",
    "systemctl status reboot.target",
    "systemctl restart nginx",
    "init_db.sh",
    "git push --force-with-lease",
    "git push --force-with-lease origin main",
    "git push origin main",
    "git push -u origin feature-f",
    "SELECT * FROM t WHERE id = 1",
    "DELETE FROM t WHERE id=1",
    "delete from sessions where expires_at < now();",
    "truncate -s 0 /var/log/app.log",
    "git commit -m \"truncate long names\"",
    "dd if=/dev/sda of=/tmp/disk.img",
    "dd if=/dev/zero of=/dev/null",
    "echo hi > /dev/null",
    "mkdir -p /tmp/mkfs-test",
    "which mkfs.ext4",
    "chmod -R 755 /var/www/html",
    "chmod 644 /etc/hosts",
    "iptables -L -n -v",
    "kubectl delete pod web-1 -n ns",
    "kubectl get ns",
    "f(){ echo hi; }",
    "",
];

#[test]
fn catches_what_it_must() {
    let checker = destructive();
    for (command, rule) in CAUGHT {
        let v = checker.check(command);
        assert!(v.is_blocked(), "{command:?} must be blocked, got {v:?}");
        let hit = v.hit().expect("a block names its rule");
        assert_eq!(hit.set, "destructive", "{command:?}");
        assert_eq!(&hit.rule, rule, "{command:?}");
    }
}

#[test]
fn lets_through_what_it_must() {
    let checker = destructive();
    for command in ALLOWED {
        let v = checker.check(command);
        assert!(!v.is_blocked(), "{command:?} must be allowed, got {v}");
    }
}

#[test]
fn every_shipped_rule_is_exercised() {
    let sets = super::shipped_sets();
    let set = sets
        .iter()
        .find(|s| s.name == "destructive")
        .expect("destructive set");
    for rule in &set.rules {
        assert!(
            CAUGHT.iter().any(|(_, r)| *r == rule.name),
            "no test catches with rule {}",
            rule.name
        );
    }
}

#[test]
fn block_message_has_the_documented_shape() {
    let v = destructive().check("rm -rf /");
    assert_eq!(
        v.to_string(),
        "jitgate: blocked by guardrail \"destructive/rm-recursive-system\": \
         recursive delete of / or a system directory"
    );
}

#[test]
fn the_production_example_includes_the_shipped_set() {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/production.toml");
    let cfg = match crate::config::Config::load(&file) {
        Ok(c) => c,
        Err(e) => panic!("{} does not load: {e}", file.display()),
    };
    let set = cfg.guardrail_set("destructive").expect("included");
    assert_eq!(set.rules.len(), super::shipped_sets()[0].rules.len());
}
