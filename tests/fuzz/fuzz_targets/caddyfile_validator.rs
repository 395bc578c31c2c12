//! The site-body validator and the renderer together. The input is up to eight vhosts,
//! `domain NUL body NUL domain NUL body …` (NUL is refused by both validators, so it cannot be
//! part of either). Every pair both validators accept becomes a vhost; then:
//! - a body accepted under a `user`'s policy is accepted, identically, under an admin's;
//! - the normalised body validates again to itself;
//! - the whole rendered Caddyfile's site blocks are exactly those vhosts (`property::check`).
#![no_main]

use gatehouse_fuzz::domain::caddyfile::{BodyPolicy, CaddyfileBody};
use gatehouse_fuzz::domain::vhost::SiteAddress;
use gatehouse_fuzz::property::{Site, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let admin = BodyPolicy::admin();
    let user = BodyPolicy::default_user();
    let parts: Vec<&str> = text.split('\0').collect();
    let mut sites = Vec::new();
    for pair in parts.chunks(2).take(8) {
        let (domain, body) = match pair {
            [domain, body] => (*domain, *body),
            [body] => ("example.com", *body),
            _ => unreachable!(),
        };
        let as_admin = CaddyfileBody::parse(body, &admin);
        if let Ok(for_user) = CaddyfileBody::parse(body, &user) {
            let as_admin = as_admin
                .as_ref()
                .unwrap_or_else(|e| panic!("a user's body is refused for an admin: {e}"));
            assert_eq!(for_user.as_str(), as_admin.as_str());
        }
        let Ok(body) = as_admin else { continue };
        let again = CaddyfileBody::parse(body.as_str(), &admin)
            .unwrap_or_else(|e| panic!("the normalised body is refused: {e}\n{body}"));
        assert_eq!(
            again.as_str(),
            body.as_str(),
            "normalising is not idempotent"
        );
        let Ok(address) = SiteAddress::parse(domain) else {
            continue;
        };
        sites.push(Site { address, body });
    }
    check(&sites);
});
