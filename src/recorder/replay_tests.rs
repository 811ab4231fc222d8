//! The player with a scripted waiter: timing, speed, idle limit, pause and quit.

use super::*;

/// Records every wait asked for and answers from a script (then `Elapsed`).
struct Script {
    asked: Vec<Option<Duration>>,
    answers: Vec<Control>,
}

impl Script {
    fn new(answers: Vec<Control>) -> Script {
        Script {
            asked: Vec::new(),
            answers: answers.into_iter().rev().collect(),
        }
    }
}

impl Waiter for Script {
    fn wait(&mut self, timeout: Option<Duration>) -> Control {
        self.asked.push(timeout);
        self.answers.pop().unwrap_or(Control::Elapsed)
    }
}

const CAST: &str = "{\"version\":2,\"width\":80,\"height\":24}\n\
[0.5, \"o\", \"a\"]\n\
[0.7, \"i\", \"x\"]\n\
[1.5, \"o\", \"b\"]\n\
[1.5, \"m\", \"note\"]\n\
[11.5, \"o\", \"c\"]\n";

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

fn run(
    cast: &str,
    opts: PlayOptions,
    answers: Vec<Control>,
) -> (Played, String, Vec<Option<Duration>>) {
    let mut out = Vec::new();
    let mut s = Script::new(answers);
    let r = play(cast.as_bytes(), &mut out, &opts, &mut s).expect("plays");
    (r, String::from_utf8(out).expect("utf-8"), s.asked)
}

fn rounded(asked: Vec<Option<Duration>>) -> Vec<Option<Duration>> {
    asked
        .into_iter()
        .map(|d| d.map(|d| Duration::from_millis(d.as_secs_f64().mul_add(1000.0, 0.5) as u64)))
        .collect()
}

#[test]
fn waits_follow_the_recorded_timing_scaled_and_capped() {
    let cases = [
        (1.0, None, vec![ms(500), ms(1000), ms(10_000)]),
        (2.0, None, vec![ms(250), ms(500), ms(5000)]),
        (1.0, Some(2.0), vec![ms(500), ms(1000), ms(2000)]),
        (4.0, Some(2.0), vec![ms(125), ms(250), ms(500)]),
        (0.0, None, vec![ms(500), ms(1000), ms(10_000)]),
    ];
    for (speed, idle_limit, want) in cases {
        let (r, out, asked) = run(CAST, PlayOptions { speed, idle_limit }, vec![]);
        assert_eq!((r, out.as_str()), (Played::Finished, "abc"));
        assert_eq!(rounded(asked), want, "speed {speed} idle {idle_limit:?}");
    }
}

#[test]
fn the_header_idle_limit_applies_unless_overridden() {
    let cast = CAST.replace("\"height\":24", "\"height\":24,\"idle_time_limit\":1.0");
    let (_, _, asked) = run(&cast, PlayOptions::default(), vec![]);
    assert_eq!(rounded(asked), vec![ms(500), ms(1000), ms(1000)]);
    let opts = PlayOptions {
        speed: 1.0,
        idle_limit: Some(3.0),
    };
    let (_, _, asked) = run(&cast, opts, vec![]);
    assert_eq!(rounded(asked), vec![ms(500), ms(1000), ms(3000)]);
}

#[test]
fn space_pauses_and_resumes_with_the_time_left() {
    let answers = vec![
        Control::Key(Key::Pause, Duration::from_millis(200)),
        Control::Key(Key::Other, Duration::ZERO),
        Control::Key(Key::Pause, Duration::ZERO),
    ];
    let (r, out, asked) = run(CAST, PlayOptions::default(), answers);
    assert_eq!((r, out.as_str()), (Played::Finished, "abc"));
    // 500 ms asked, paused with 200 left: wait for keys, then the 200 ms, then the rest.
    assert_eq!(
        rounded(asked),
        vec![ms(500), None, None, ms(200), ms(1000), ms(10_000)]
    );
}

#[test]
fn q_quits_while_playing_or_paused() {
    let (r, out, _) = run(
        CAST,
        PlayOptions::default(),
        vec![Control::Elapsed, Control::Key(Key::Quit, Duration::ZERO)],
    );
    assert_eq!((r, out.as_str()), (Played::Quit, "a"));
    let (r, out, _) = run(
        CAST,
        PlayOptions::default(),
        vec![
            Control::Key(Key::Pause, Duration::ZERO),
            Control::Key(Key::Quit, Duration::ZERO),
        ],
    );
    assert_eq!((r, out.as_str()), (Played::Quit, ""));
}

#[test]
fn cat_prints_output_only() {
    let mut out = Vec::new();
    cat(CAST.as_bytes(), &mut out).expect("cat");
    assert_eq!(out, b"abc");
}

#[test]
fn a_crash_cut_last_line_is_ignored_but_bad_lines_are_errors() {
    let cut = format!("{CAST}[12.0, \"o\", \"unfinis");
    let mut out = Vec::new();
    cat(cut.as_bytes(), &mut out).expect("cut file plays");
    assert_eq!(out, b"abc");
    let (r, out, _) = run(&cut, PlayOptions::default(), vec![]);
    assert_eq!((r, out.as_str()), (Played::Finished, "abc"));

    let bad = format!("{CAST}[12.0, \"o\"]\n");
    let err = cat(bad.as_bytes(), &mut Vec::new()).expect_err("bad line");
    assert!(err.to_string().contains("line 7"), "{err}");
    assert!(cat(&b""[..], &mut Vec::new()).is_err());
    assert!(cat(&b"{\"version\":1}\n"[..], &mut Vec::new()).is_err());
}

#[test]
fn a_last_line_cut_inside_a_character_is_dropped() {
    let mut cast = "{\"version\":2,\"width\":80,\"height\":24}\n[0.5, \"o\", \"a\"]\n"
        .as_bytes()
        .to_vec();
    // "[0.6, "o", "é" cut after the first byte of é.
    cast.extend_from_slice(b"[0.6, \"o\", \"\xc3");
    let mut out = Vec::new();
    let r = play(
        cast.as_slice(),
        &mut out,
        &PlayOptions::default(),
        &mut Script::new(vec![]),
    );
    assert_eq!(
        (r.expect("plays"), out.as_slice()),
        (Played::Finished, &b"a"[..])
    );
    let mut out = Vec::new();
    cat(cast.as_slice(), &mut out).expect("cats");
    assert_eq!(out, b"a");
}

#[test]
fn an_absurd_gap_is_capped_not_a_panic() {
    let cast = "{\"version\":2,\"width\":80,\"height\":24}\n[1e300, \"o\", \"a\"]\n";
    let (r, out, asked) = run(
        cast,
        PlayOptions {
            speed: 1e-300,
            idle_limit: None,
        },
        vec![],
    );
    assert_eq!((r, out.as_str()), (Played::Finished, "a"));
    assert_eq!(asked, vec![Some(MAX_GAP)]);
}

#[test]
fn quitting_midway_leaves_the_terminal_as_it_was() {
    let cast = "{\"version\":2,\"width\":80,\"height\":24}\n\
                [0.1, \"o\", \"\\u001b[?1049h\\u001b[?25lvi\"]\n[0.5, \"o\", \"more\"]\n";
    let mut out = Vec::new();
    let mut s = Script::new(vec![
        Control::Elapsed,
        Control::Key(Key::Quit, Duration::ZERO),
    ]);
    let r = play_to_terminal(cast.as_bytes(), &mut out, &PlayOptions::default(), &mut s);
    assert_eq!(r.expect("plays"), Played::Quit);
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(out, format!("\u{1b}[?1049h\u{1b}[?25lvi{TERMINAL_RESET}"));
    // Played to the end, the recording's own output is all there is.
    let mut out = Vec::new();
    let r = play_to_terminal(
        cast.as_bytes(),
        &mut out,
        &PlayOptions::default(),
        &mut Script::new(vec![]),
    );
    assert_eq!(r.expect("plays"), Played::Finished);
    assert!(!String::from_utf8(out).unwrap().contains(TERMINAL_RESET));
}
