//! The upstream parsers. An accepted list is canonical: parsing its joined form gives the same
//! upstreams, each written to the Caddyfile as one plain token.
#![no_main]

use gatehouse_fuzz::domain::caddyfile::encode_arg;
use gatehouse_fuzz::domain::vhost::{Upstream, Upstreams};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(one) = Upstream::parse(text) {
        let again = Upstream::parse(one.as_str())
            .unwrap_or_else(|e| panic!("canonical {:?} is refused: {e}", one.as_str()));
        assert_eq!(again, one);
    }
    let Ok(list) = Upstreams::parse(text) else {
        return;
    };
    let joined = list.joined();
    let again =
        Upstreams::parse(&joined).unwrap_or_else(|e| panic!("joined {joined:?} is refused: {e}"));
    assert_eq!(again, list, "parsing the joined form changes the upstreams");
    for u in list.as_slice() {
        assert_eq!(
            encode_arg(u.as_str()),
            u.as_str(),
            "an upstream needs quoting"
        );
    }
});
