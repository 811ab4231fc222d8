//! File transfer through the bastion (scp, sftp, rsync, both directions at once) and the
//! bastion's memory against a paused reader.

use super::lab::{self, Lab, output, sha256_file, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scp_up_and_down_50_mib_and_sftp_when_allowed() {
    lab::require("scp");
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let local = lab.path().join("big.bin");
    let mut data = vec![0u8; 50 << 20];
    getrandom::fill(&mut data).unwrap();
    std::fs::write(&local, &data).unwrap();
    drop(data);
    let remote = lab.path().join("remote.bin");
    let back = lab.path().join("back.bin");
    let scp = |from: String, to: String| {
        let mut c = tokio::process::Command::new("scp");
        c.arg("-F")
            .arg(&lab.ssh_config)
            .args(["-q", "-o", &lab.jump(), &from, &to])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    };
    let out = output(
        scp(
            local.display().to_string(),
            format!("root@db1:{}", remote.display()),
        ),
        300,
    )
    .await;
    assert!(out.status.success(), "scp up: {}", text(&out.stderr));
    let out = output(
        scp(
            format!("root@db1:{}", remote.display()),
            back.display().to_string(),
        ),
        300,
    )
    .await;
    assert!(out.status.success(), "scp down: {}", text(&out.stderr));
    let want = sha256_file(&local);
    assert_eq!(sha256_file(&remote), want);
    assert_eq!(sha256_file(&back), want);

    // sftp itself, in batch mode.
    let batch = lab.path().join("batch");
    std::fs::write(&batch, format!("ls -l {}\n", remote.display())).unwrap();
    let mut sftp = tokio::process::Command::new("sftp");
    sftp.arg("-F")
        .arg(&lab.ssh_config)
        .args(["-o", &lab.jump(), "-b"])
        .arg(&batch)
        .arg("root@db1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = output(sftp, 60).await;
    assert!(out.status.success(), "sftp: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("52428800"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rsync_and_legacy_scp_through_exec() {
    lab::require("rsync");
    let lab = Lab::start().await;
    lab.grant("db1", "root", 1, 3600, 0).await;
    let src = lab.path().join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(src.join("sub/b.txt"), "beta\n").unwrap();
    let dst = lab.path().join("copy");
    let rsh = format!(
        "ssh -F {} -J alice@127.0.0.1:{}",
        lab.ssh_config.display(),
        lab.port
    );
    let mut rsync = tokio::process::Command::new("rsync");
    rsync
        .args(["-a", "-e", &rsh])
        .arg(format!("{}/", src.display()))
        .arg(format!("root@db1:{}/", dst.display()))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = output(rsync, 120).await;
    assert!(out.status.success(), "rsync: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dst.join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    // Rule 1 has no sftp: scp -O (the exec protocol) still works.
    let mut scp = tokio::process::Command::new("scp");
    scp.arg("-F")
        .arg(&lab.ssh_config)
        .args(["-O", "-q", "-o", &lab.jump()])
        .arg(src.join("a.txt"))
        .arg(format!(
            "root@db1:{}",
            lab.path().join("legacy.txt").display()
        ))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = output(scp, 120).await;
    assert!(out.status.success(), "scp -O: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(lab.path().join("legacy.txt")).unwrap(),
        "alpha\n"
    );
}

/// Not a test by itself: runs the bastion of the lab in `$JITGATE_BASTION_CHILD` in this
/// (child) process, so a test can measure the bastion's memory alone. Stops at stdin EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "started by back_pressure_keeps_bastion_memory_bounded"]
async fn bastion_child_process() {
    let Ok(dir) = std::env::var("JITGATE_BASTION_CHILD") else {
        return;
    };
    lab::run_child(std::path::Path::new(&dir)).await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn back_pressure_keeps_bastion_memory_bounded() {
    let mut lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let (mut child, port) = lab.spawn_child().await;
    lab.port = port;
    let pid = child.id().unwrap();
    // Warm up: one session, so the baseline includes a connection's fixed costs.
    let out = output(lab.ssh(&["root@db1", "echo warm"]), 60).await;
    assert_eq!(text(&out.stdout), "warm\n", "{}", text(&out.stderr));
    let base = rss_kib(pid);
    // The target writes 256 MiB as fast as it can; the engineer's side reads nothing for a
    // while, then everything.
    const TOTAL: u64 = 256 << 20;
    let mut cmd = lab.ssh(&["root@db1", &format!("head -c {TOTAL} /dev/zero")]);
    cmd.stdout(std::process::Stdio::piped());
    let mut ssh = cmd.spawn().unwrap();
    let mut stdout = ssh.stdout.take().unwrap();
    let mut peak = base;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
    }
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(120),
            tokio::io::AsyncReadExt::read(&mut stdout, &mut buf),
        )
        .await
        .expect("output keeps flowing")
        .unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
        if got % (8 << 20) < n as u64 {
            peak = peak.max(rss_kib(pid));
        }
    }
    assert_eq!(got, TOTAL, "every byte arrives");
    assert!(ssh.wait().await.unwrap().success());
    let grown_mib = peak.saturating_sub(base) / 1024;
    // Unbounded buffering would hold most of the 256 MiB while the reader paused.
    assert!(
        grown_mib < 64,
        "bastion memory grew by {grown_mib} MiB (base {base} KiB, peak {peak} KiB)"
    );
    drop(child.stdin.take());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), child.wait()).await;
}

/// `in.bin` in the lab's folder, `len` random bytes; returns its path and contents.
fn random_file(lab: &Lab, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let path = lab.path().join("in.bin");
    let mut data = vec![0u8; len];
    getrandom::fill(&mut data).unwrap();
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_both_ways_at_once_through_cat() {
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let (input, _) = random_file(&lab, 32 << 20);
    let echoed = lab.path().join("out.bin");
    let mut cmd = lab.ssh(&["root@db1", "cat"]);
    cmd.stdin(std::fs::File::open(&input).unwrap())
        .stdout(std::fs::File::create(&echoed).unwrap());
    let status = tokio::time::timeout(std::time::Duration::from_secs(300), cmd.status())
        .await
        .expect("cat finishes")
        .unwrap();
    assert!(status.success());
    let got = std::fs::metadata(&echoed).unwrap().len();
    assert_eq!(got, 32 << 20);
    assert_eq!(sha256_file(&echoed), sha256_file(&input));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_pauses_reading_while_it_sends_is_not_stuck() {
    use tokio::io::AsyncReadExt;
    // `ssh db1 cat < big | less`: the engineer keeps sending while reading nothing. Both
    // directions fill their buffers; once the reader resumes, everything must flow again.
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let (input, data) = random_file(&lab, 32 << 20);
    let mut cmd = lab.ssh(&["root@db1", "cat"]);
    cmd.stdin(std::fs::File::open(&input).unwrap())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let mut echoed = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        stdout.read_to_end(&mut echoed),
    )
    .await
    .expect("the output flows again once the client reads")
    .unwrap();
    assert!(child.wait().await.unwrap().success());
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "the echo differs from the input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn output_faster_than_the_recorder_is_recorded_whole() {
    // 40 MiB of text, under the default exec cap (64 MiB of file): the session outruns the
    // recorder's writer (this test build leaves our crate unoptimised), which must then hold
    // the session back instead of leaving a gap in the recording.
    const SIZE: usize = 40 << 20;
    let lab = Lab::start().await;
    let id = lab.grant("db1", "root", 0, 3600, 0).await;
    let out = output(
        lab.ssh(&["root@db1", &format!("yes jitgate | head -c {SIZE}")]),
        300,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), SIZE);
    let sessions = lab.ended_sessions(id).await;
    let rel = sessions[0].recording.clone().expect("a recording");
    let cast = std::fs::read_to_string(lab.config.server.recordings_dir.join(rel)).unwrap();
    let summary = jitgate::recorder::validate_cast(&cast).expect("valid asciicast");
    assert!(summary.markers.is_empty(), "{:?}", summary.markers);
    assert_eq!(summary.output.len(), SIZE);
    assert_eq!(summary.output.as_bytes(), out.stdout.as_slice());
}

/// Bytes of the paused downloads below: far more than the bastion's queues hold.
const DOWN: usize = 64 << 20;

/// Starts a download of `DOWN` bytes over the multiplexed connection `mux` and reads none of
/// it for two seconds: its queues fill and it holds the upstream session.
async fn paused_download(
    lab: &Lab,
    mux: &[&str],
) -> (tokio::process::Child, tokio::process::ChildStdout) {
    let head = format!("head -c {DOWN} /dev/zero");
    let mut down = lab.ssh(&[mux, &[head.as_str()]].concat());
    down.stdout(std::process::Stdio::piped());
    let mut down = down.spawn().unwrap();
    let stdout = down.stdout.take().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    (down, stdout)
}

/// Reads the paused download to its end, which must come.
async fn resume(mut down: tokio::process::Child, mut stdout: tokio::process::ChildStdout) {
    let mut got = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut got),
    )
    .await
    .expect("the download flows again once its reader resumes")
    .unwrap();
    assert_eq!(got.len(), DOWN);
    assert!(down.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_download_does_not_stick_an_upload_on_the_same_connection() {
    // Two sessions over one multiplexed connection: a download whose reader pauses, and an
    // upload. While the download's output waits for the engineer, its queue fills and the
    // upload waits for the target; once the reader resumes, both must finish.
    let lab = Lab::start().await;
    lab.grant("db1", "root", 0, 3600, 0).await;
    let sock = lab.control_master("root@db1").await;
    let mux = ["-S", sock.as_str(), "-o", "ControlMaster=no", "root@db1"];
    let (down, stdout) = paused_download(&lab, &mux).await;
    let (input, _) = random_file(&lab, 32 << 20);
    let mut up = lab.ssh(&[&mux[..], &["wc -c"]].concat());
    up.stdin(std::fs::File::open(&input).unwrap());
    let up = tokio::spawn(output(up, 120));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    resume(down, stdout).await;
    let up = up.await.unwrap();
    assert_eq!(
        text(&up.stdout).trim(),
        (32 << 20).to_string(),
        "{}",
        text(&up.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remote_forward_asked_during_a_paused_download_does_not_stick_it() {
    // `ssh -O forward -R` on a connection whose download is paused: the target's answer
    // waits behind the download in the upstream session, and the nested session, waiting
    // for it, would read none of the engineer's window adjustments.
    let lab = Lab::start().await;
    lab.grant("db1", "root", 2, 3600, 0).await;
    let sock = lab.control_master("root@db1").await;
    let mux = ["-S", sock.as_str(), "-o", "ControlMaster=no", "root@db1"];
    let (down, stdout) = paused_download(&lab, &mux).await;
    let ask = [
        "-S",
        sock.as_str(),
        "-O",
        "forward",
        "-R",
        "0:127.0.0.1:9",
        "root@db1",
    ];
    let asked = tokio::spawn(output(lab.ssh(&ask), 120));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    resume(down, stdout).await;
    let asked = asked.await.unwrap();
    assert!(
        text(&asked.stderr).contains("forwarding failed"),
        "{}",
        text(&asked.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_local_forward_beside_a_paused_download_does_not_stick_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // `ssh -L` on a connection whose download is paused: bytes sent into the forward wait for
    // the target's window, which waits behind the download in the upstream session.
    let lab = Lab::start().await;
    lab.grant("db1", "root", 2, 3600, 0).await;
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let sunk = tokio::spawn(async move {
        let (mut conn, _) = sink.accept().await.unwrap();
        let mut n = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match conn.read(&mut buf).await.unwrap() {
                0 => return n,
                k => n += k,
            }
        }
    });
    let sock = lab.control_master("root@db1").await;
    let mux = ["-S", sock.as_str(), "-o", "ControlMaster=no", "root@db1"];
    let local = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let local_port = local.local_addr().unwrap().port();
    drop(local);
    let spec = format!("127.0.0.1:{local_port}:127.0.0.1:{sink_port}");
    let ask = [
        "-S",
        sock.as_str(),
        "-O",
        "forward",
        "-L",
        &spec,
        "root@db1",
    ];
    let asked = output(lab.ssh(&ask), 60).await;
    assert!(asked.status.success(), "{}", text(&asked.stderr));
    let (down, stdout) = paused_download(&lab, &mux).await;
    const SENT: usize = 32 << 20;
    let send = tokio::spawn(async move {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local_port))
            .await
            .unwrap();
        conn.write_all(&vec![7u8; SENT]).await.unwrap();
        conn.shutdown().await.unwrap();
    });
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    resume(down, stdout).await;
    tokio::time::timeout(std::time::Duration::from_secs(120), send)
        .await
        .expect("the forward's bytes are all taken")
        .unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(120), sunk)
        .await
        .expect("the forward's bytes arrive")
        .unwrap();
    assert_eq!(n, SENT);
}
