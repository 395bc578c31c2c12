//! The access-log line parser, fed whatever a log file may hold: it never panics, and an entry
//! it reads survives the JSON round trip the agent's stream puts it through (times to within
//! a unit in the last place).
#![no_main]

use gatehouse_fuzz::domain::access_log::{Entry, ParsedLine, host_without_port, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ParsedLine::Access(entry)) = parse_line(line) {
        let _ = host_without_port(&entry.host);
        if entry.ts.is_finite() && entry.duration.is_finite() {
            let json = serde_json::to_string(&entry).expect("an entry serialises");
            let back: Entry = serde_json::from_str(&json).expect("and reads back");
            // serde_json reads floats fast rather than correctly rounded, so a time may come
            // back one unit in the last place off; nobody sees that in seconds. All else is exact.
            let close = |a: f64, b: f64| a == b || (a - b).abs() <= a.abs().max(b.abs()) * 1e-15;
            assert!(close(back.ts, entry.ts), "{} vs {}", back.ts, entry.ts);
            assert!(close(back.duration, entry.duration));
            let exact = |e: &Entry| Entry {
                ts: 0.0,
                duration: 0.0,
                ..e.clone()
            };
            assert_eq!(exact(&back), exact(&entry));
        }
    }
});
