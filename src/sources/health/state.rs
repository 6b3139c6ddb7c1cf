//! The health verdict for one endpoint: a pure rise/fall hysteresis state machine and the
//! vocabulary of probe outcomes it consumes ([`Outcome`], [`FailReason`]).
//!
//! No I/O, no clocks, no logging: callers pass outcomes in (and read the time themselves if they
//! need it), so every transition is unit-tested below. Imports nothing of ours.

use std::fmt;
use std::time::Duration;

/// What the health checks currently say about one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No verdict yet. Routing treats it as up (fail-open) until the first verdict.
    Unknown,
    Up,
    Down,
}

impl State {
    /// A stable lower-case name, for logs, /status and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one probe attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The probe passed; `detail` says what was seen ("HTTP status 200", "TCP connect ok").
    Pass {
        detail: String,
    },
    Fail {
        reason: FailReason,
    },
}

impl Outcome {
    pub fn pass(detail: impl Into<String>) -> Outcome {
        Outcome::Pass { detail: detail.into() }
    }

    pub fn fail(reason: FailReason) -> Outcome {
        Outcome::Fail { reason }
    }

    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Pass { detail } => write!(f, "pass: {detail}"),
            Outcome::Fail { reason } => write!(f, "fail: {reason}"),
        }
    }
}

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// The HTTP server answered with a status outside the expected range.
    Status(u16),
    /// No complete answer (or TCP connection) within the check's timeout.
    Timeout(Duration),
    /// The address actively refused the connection (nothing listening).
    ConnectionRefused,
    /// Any other failure to connect (unreachable network, reset, ...).
    Connect(String),
    /// The TLS handshake failed (untrusted or mismatched certificate, protocol error).
    Tls(String),
    /// Anything else (malformed response, I/O error after connecting, ...).
    Other(String),
}

impl FailReason {
    /// Every value [`FailReason::kind`] can return: a closed label set for metrics.
    pub const KINDS: [&'static str; 6] = ["status", "timeout", "refused", "connect", "tls", "other"];

    /// A closed, stable label for metrics (never derived from `Debug` or the message).
    pub fn kind(&self) -> &'static str {
        match self {
            FailReason::Status(_) => "status",
            FailReason::Timeout(_) => "timeout",
            FailReason::ConnectionRefused => "refused",
            FailReason::Connect(_) => "connect",
            FailReason::Tls(_) => "tls",
            FailReason::Other(_) => "other",
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Status(code) => write!(f, "HTTP status {code}"),
            FailReason::Timeout(after) => write!(f, "timed out after {after:?}"),
            FailReason::ConnectionRefused => f.write_str("connection refused"),
            FailReason::Connect(msg) => write!(f, "connect failed: {msg}"),
            FailReason::Tls(msg) => write!(f, "TLS error: {msg}"),
            FailReason::Other(msg) => f.write_str(msg),
        }
    }
}

/// A change of [`State`] decided by one outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flip {
    pub from: State,
    pub to: State,
}

/// Rise/fall hysteresis for one endpoint.
///
/// - `Up -> Down` after `fall` consecutive failures; `Down -> Up` after `rise` consecutive passes.
/// - From `Unknown` the same counts apply: `rise` passes give `Up`, `fall` failures give `Down`.
///   Routing already treats `Unknown` as up, so an endpoint that has never been seen is judged
///   exactly like one that was up: one failed probe at start-up (a slow boot, a dropped packet)
///   does not pull a site out of the answers, and it takes `rise` passes to claim a positive
///   verdict. The cost is that a dead endpoint is reported `Down` only after `fall` intervals,
///   the same delay as for an endpoint that dies later.
/// - A pass resets the failure streak and a failure resets the pass streak, so alternating
///   results never flip the state when `rise` and `fall` are both above 1.
///
/// `rise` and `fall` below 1 are treated as 1 (validation already rejects them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    rise: u32,
    fall: u32,
    state: State,
    passes: u32,
    fails: u32,
}

impl Hysteresis {
    pub fn new(rise: u32, fall: u32) -> Hysteresis {
        Hysteresis { rise: rise.max(1), fall: fall.max(1), state: State::Unknown, passes: 0, fails: 0 }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Consecutive passes seen since the last failure.
    pub fn passes(&self) -> u32 {
        self.passes
    }

    /// Consecutive failures seen since the last pass.
    pub fn fails(&self) -> u32 {
        self.fails
    }

    /// The same state and streaks, judged from now on with new thresholds (a reloaded
    /// check): a verdict survives a change of `rise` or `fall`.
    pub fn with_thresholds(&self, rise: u32, fall: u32) -> Hysteresis {
        Hysteresis { rise: rise.max(1), fall: fall.max(1), ..self.clone() }
    }

    /// Feeds one probe outcome; returns the flip it decided, if any.
    pub fn observe(&mut self, outcome: &Outcome) -> Option<Flip> {
        let to = if outcome.is_pass() {
            self.fails = 0;
            self.passes = self.passes.saturating_add(1);
            (self.state != State::Up && self.passes >= self.rise).then_some(State::Up)
        } else {
            self.passes = 0;
            self.fails = self.fails.saturating_add(1);
            (self.state != State::Down && self.fails >= self.fall).then_some(State::Down)
        }?;
        let flip = Flip { from: self.state, to };
        self.state = to;
        Some(flip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass() -> Outcome {
        Outcome::pass("HTTP status 200")
    }

    fn fail() -> Outcome {
        Outcome::fail(FailReason::Status(503))
    }

    /// Feeds a pattern ('+' pass, '-' fail) and returns the state after each step and every flip
    /// with the (1-based) step that decided it.
    fn run(h: &mut Hysteresis, pattern: &str) -> (Vec<State>, Vec<(usize, Flip)>) {
        let mut states = Vec::new();
        let mut flips = Vec::new();
        for (i, c) in pattern.chars().enumerate() {
            let o = match c {
                '+' => pass(),
                '-' => fail(),
                other => panic!("bad pattern char {other:?}"),
            };
            if let Some(f) = h.observe(&o) {
                flips.push((i + 1, f));
            }
            states.push(h.state());
        }
        (states, flips)
    }

    fn flip(from: State, to: State) -> Flip {
        Flip { from, to }
    }

    use State::{Down, Unknown, Up};

    #[test]
    fn starts_unknown_with_no_streaks() {
        let h = Hysteresis::new(2, 3);
        assert_eq!((h.state(), h.passes(), h.fails()), (Unknown, 0, 0));
    }

    #[test]
    fn unknown_to_up_after_rise_passes() {
        let mut h = Hysteresis::new(3, 2);
        let (states, flips) = run(&mut h, "+++");
        assert_eq!(states, [Unknown, Unknown, Up]);
        assert_eq!(flips, [(3, flip(Unknown, Up))]);
    }

    #[test]
    fn unknown_to_down_after_fall_failures() {
        let mut h = Hysteresis::new(2, 3);
        let (states, flips) = run(&mut h, "---");
        assert_eq!(states, [Unknown, Unknown, Down]);
        assert_eq!(flips, [(3, flip(Unknown, Down))]);
    }

    #[test]
    fn up_to_down_after_fall_failures() {
        let mut h = Hysteresis::new(2, 3);
        let (states, flips) = run(&mut h, "++---");
        assert_eq!(states, [Unknown, Up, Up, Up, Down]);
        assert_eq!(flips, [(2, flip(Unknown, Up)), (5, flip(Up, Down))]);
    }

    #[test]
    fn down_to_up_after_rise_passes() {
        let mut h = Hysteresis::new(2, 3);
        let (states, flips) = run(&mut h, "---++");
        assert_eq!(states, [Unknown, Unknown, Down, Down, Up]);
        assert_eq!(flips, [(3, flip(Unknown, Down)), (5, flip(Down, Up))]);
    }

    #[test]
    fn staying_in_a_state_never_flips_again() {
        let mut h = Hysteresis::new(2, 2);
        let (_, flips) = run(&mut h, "++++++++");
        assert_eq!(flips, [(2, flip(Unknown, Up))]);
        let mut h = Hysteresis::new(2, 2);
        let (_, flips) = run(&mut h, "--------");
        assert_eq!(flips, [(2, flip(Unknown, Down))]);
    }

    #[test]
    fn flapping_never_flips_with_rise_and_fall_two() {
        for start in ["", "++", "--"] {
            for flap in ["+-", "-+"] {
                let mut h = Hysteresis::new(2, 2);
                run(&mut h, start);
                let before = h.state();
                let (states, flips) = run(&mut h, &flap.repeat(50));
                assert!(flips.is_empty(), "start {start:?}, {flap:?}: {flips:?}");
                assert!(states.iter().all(|s| *s == before));
            }
        }
    }

    #[test]
    fn rise_and_fall_one_follow_every_result() {
        let mut h = Hysteresis::new(1, 1);
        let (states, flips) = run(&mut h, "+-+--++");
        assert_eq!(states, [Up, Down, Up, Down, Down, Up, Up]);
        assert_eq!(
            flips,
            [
                (1, flip(Unknown, Up)),
                (2, flip(Up, Down)),
                (3, flip(Down, Up)),
                (4, flip(Up, Down)),
                (6, flip(Down, Up)),
            ]
        );
        let mut h = Hysteresis::new(1, 1);
        assert_eq!(run(&mut h, "-").1, [(1, flip(Unknown, Down))]);
    }

    #[test]
    fn a_pass_resets_the_failure_streak() {
        let mut h = Hysteresis::new(2, 3);
        run(&mut h, "++--");
        assert_eq!((h.state(), h.passes(), h.fails()), (Up, 0, 2));
        run(&mut h, "+");
        assert_eq!((h.state(), h.passes(), h.fails()), (Up, 1, 0));
        // Two more failures are not enough: the streak restarted.
        let (states, flips) = run(&mut h, "--");
        assert_eq!((states, flips), (vec![Up, Up], vec![]));
        assert_eq!(run(&mut h, "-").1, [(1, flip(Up, Down))]);
    }

    #[test]
    fn a_failure_resets_the_pass_streak() {
        let mut h = Hysteresis::new(3, 1);
        run(&mut h, "-++");
        assert_eq!((h.state(), h.passes(), h.fails()), (Down, 2, 0));
        run(&mut h, "-");
        assert_eq!((h.state(), h.passes(), h.fails()), (Down, 0, 1));
        let (states, flips) = run(&mut h, "+++");
        assert_eq!(states, [Down, Down, Up]);
        assert_eq!(flips, [(3, flip(Down, Up))]);
    }

    #[test]
    fn unknown_streaks_carry_into_the_first_verdict() {
        // From Unknown a failure interrupts the rise streak like anywhere else.
        let mut h = Hysteresis::new(2, 3);
        let (states, flips) = run(&mut h, "+-+-++");
        assert_eq!(states, [Unknown, Unknown, Unknown, Unknown, Unknown, Up]);
        assert_eq!(flips, [(6, flip(Unknown, Up))]);
    }

    #[test]
    fn new_thresholds_keep_the_state_and_streaks() {
        let mut h = Hysteresis::new(2, 3);
        run(&mut h, "---");
        let mut h = h.with_thresholds(1, 1);
        assert_eq!((h.state(), h.fails()), (Down, 3));
        assert_eq!(run(&mut h, "+").1, [(1, flip(Down, Up))], "the new rise applies");
        let mut h = Hysteresis::new(2, 2);
        run(&mut h, "+");
        let mut h = h.with_thresholds(3, 2);
        assert_eq!((h.state(), h.passes()), (Unknown, 1));
        assert_eq!(run(&mut h, "++").1, [(2, flip(Unknown, Up))], "the streak carries over");
    }

    #[test]
    fn zero_rise_or_fall_behaves_as_one() {
        let mut h = Hysteresis::new(0, 0);
        assert_eq!(run(&mut h, "+-").1, [(1, flip(Unknown, Up)), (2, flip(Up, Down))]);
    }

    #[test]
    fn large_streaks_saturate() {
        let mut h = Hysteresis::new(1, 1);
        h.passes = u32::MAX;
        h.state = Up;
        assert_eq!(h.observe(&pass()), None);
        assert_eq!(h.passes(), u32::MAX);
    }

    #[test]
    fn fail_reason_kinds_are_closed_and_messages_readable() {
        let cases = [
            (FailReason::Status(503), "status", "HTTP status 503"),
            (FailReason::Timeout(Duration::from_secs(2)), "timeout", "timed out after 2s"),
            (FailReason::Timeout(Duration::from_millis(500)), "timeout", "timed out after 500ms"),
            (FailReason::ConnectionRefused, "refused", "connection refused"),
            (FailReason::Connect("network unreachable".into()), "connect", "connect failed: network unreachable"),
            (FailReason::Tls("invalid peer certificate".into()), "tls", "TLS error: invalid peer certificate"),
            (FailReason::Other("bad response".into()), "other", "bad response"),
        ];
        for (reason, kind, text) in cases {
            assert_eq!(reason.kind(), kind);
            assert!(FailReason::KINDS.contains(&kind));
            assert_eq!(reason.to_string(), text);
        }
        assert_eq!(Outcome::fail(FailReason::ConnectionRefused).to_string(), "fail: connection refused");
        assert_eq!(pass().to_string(), "pass: HTTP status 200");
        assert_eq!(State::Down.to_string(), "down");
    }
}
