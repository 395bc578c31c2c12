//! The site address (domain) parser. An accepted address is canonical: parsing its canonical
//! text or its display form (Unicode, as the edit form shows it) gives it back unchanged, and
//! it is written to the Caddyfile as one plain token.
#![no_main]

use gatehouse_fuzz::domain::caddyfile::{LexOptions, encode_arg, tokenize_with};
use gatehouse_fuzz::domain::vhost::SiteAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(address) = SiteAddress::parse(text) else {
        return;
    };
    let canonical = address.as_str();
    let again = SiteAddress::parse(canonical)
        .unwrap_or_else(|e| panic!("canonical {canonical:?} is refused: {e}"));
    assert_eq!(again, address, "parsing the canonical form changes it");
    let shown = address.display();
    let edited = SiteAddress::parse(&shown)
        .unwrap_or_else(|e| panic!("display form {shown:?} of {canonical:?} is refused: {e}"));
    assert_eq!(
        edited.as_str(),
        canonical,
        "saving the edit form unchanged changes the domain"
    );
    assert_eq!(
        encode_arg(canonical),
        canonical,
        "the address needs quoting"
    );
    let tokens = tokenize_with(canonical, LexOptions::CADDY_2_6).expect("lexes");
    assert_eq!(tokens.len(), 1, "{canonical:?}");
    assert!(address.matches_host(address.host().trim_start_matches("*.")) || address.is_wildcard());
});
