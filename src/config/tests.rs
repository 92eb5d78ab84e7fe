//! Unit tests of the settings file: unknown keys, profiles' relative paths. Tests that parse a
//! command line into settings belong to the command layer (`commands/settings_tests.rs`).

use super::*;

#[test]
fn file_config_rejects_unknown_keys() {
    let err = toml::from_str::<FileConfig>("rat = 5").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn a_profiles_relative_paths_are_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.toml");
    std::fs::write(
        &path,
        "[profiles.p]\nmapping = \"m.toml\"\ntoken_file = \"/t\"\n",
    )
    .unwrap();
    let file = FileConfig::load(Some(&path), Some("p")).unwrap();
    assert_eq!(file.mapping, Some(dir.path().join("m.toml")));
    assert_eq!(file.token_file, Some(PathBuf::from("/t")));
}
