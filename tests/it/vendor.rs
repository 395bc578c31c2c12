//! The vendored browser code is exactly the pinned release, with its licence beside it.

use sha2::{Digest, Sha256};
use std::path::Path;

#[test]
fn vendored_files_match_their_recorded_sha256_and_carry_a_licence() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("static/vendor");
    let manifest: toml::Table = std::fs::read_to_string(dir.join("MANIFEST.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let files = manifest["file"].as_array().expect("[[file]] entries");
    assert!(files.len() >= 2);
    let mut listed = Vec::new();
    for file in files {
        let path = file["path"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            digest,
            file["sha256"].as_str().unwrap(),
            "{path} differs from the pinned release"
        );
        let licence = file["license"].as_str().unwrap();
        assert!(
            dir.join(licence).is_file(),
            "{path}: licence file {licence} missing"
        );
        assert!(
            path.contains(file["version"].as_str().unwrap()),
            "{path}: file name carries the version"
        );
        listed.push(path.to_string());
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".js") {
            assert!(
                listed.contains(&name),
                "{name} is vendored but not pinned in MANIFEST.toml"
            );
        }
    }
}

#[test]
fn htmx_is_version_2() {
    let htmx = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("static/vendor/htmx-2.0.11.min.js"),
    )
    .unwrap();
    assert!(htmx.contains("version:\"2.0.11\""));
}
