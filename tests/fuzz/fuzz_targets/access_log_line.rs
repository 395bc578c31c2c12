//! The access-log line parser, fed whatever a log file may hold: it never panics, and an entry
//! it reads survives the JSON round trip the agent's stream puts it through.
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
            assert_eq!(back, entry);
        }
    }
});
