//! Reads `fixtures/login/*.http`: a block of `key: value` lines that set
//! what to send and what to expect, an empty line, then the body bytes.

use std::path::{Path, PathBuf};

use super::http::RawRequest;

#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub expect_status: u16,
    pub expect_error: Option<String>,
    pub expect_field: Option<String>,
    pub store_unavailable: bool,
    pub request: RawRequest,
}

/// Folder of the login fixtures.
pub fn login_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/login")
}

/// Reads every `.http` file of `folder`, sorted by name.
pub fn load_all(folder: &Path) -> Vec<Fixture> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "http")
        })
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", folder.display());
    paths.iter().map(|path| load(path)).collect()
}

pub fn load(path: &Path) -> Fixture {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(path).unwrap();
    let split = bytes
        .windows(2)
        .position(|window| window == b"\n\n")
        .unwrap_or_else(|| panic!("{name}: no empty line after the header block"));
    let head = std::str::from_utf8(&bytes[..split])
        .unwrap_or_else(|_| panic!("{name}: the header block is not UTF-8"));
    let body = bytes[split + 2..].to_vec();

    let mut fixture = Fixture {
        name: name.clone(),
        expect_status: 0,
        expect_error: None,
        expect_field: None,
        store_unavailable: false,
        request: RawRequest {
            method: "POST".to_owned(),
            path: "/auth/login".to_owned(),
            headers: Vec::new(),
            body,
            chunked: false,
        },
    };
    for line in head.lines().filter(|line| !line.starts_with('#')) {
        // An empty value may lose its space to an editor: `content-type:`.
        let (key, value) = line
            .split_once(':')
            .map(|(key, value)| (key, value.strip_prefix(' ').unwrap_or(value)))
            .unwrap_or_else(|| panic!("{name}: line {line:?} is not `key: value`"));
        match key {
            "expect-status" => fixture.expect_status = value.parse().expect("status"),
            "expect-error" => fixture.expect_error = Some(value.to_owned()),
            "expect-field" => fixture.expect_field = Some(value.to_owned()),
            "method" => fixture.request.method = value.to_owned(),
            "store" if value == "unavailable" => fixture.store_unavailable = true,
            "store" => panic!("{name}: store is {value:?}; the only value is `unavailable`"),
            "content-type" => fixture
                .request
                .headers
                .push(("Content-Type".to_owned(), value.as_bytes().to_vec())),
            "header" => {
                let (header, header_value) = value
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("{name}: header {value:?} is not `Name: value`"));
                if header.eq_ignore_ascii_case("transfer-encoding") && header_value == "chunked" {
                    fixture.request.chunked = true;
                } else {
                    fixture
                        .request
                        .headers
                        .push((header.to_owned(), header_value.as_bytes().to_vec()));
                }
            }
            other => panic!("{name}: unknown key {other:?}"),
        }
    }
    assert!(
        fixture.expect_status != 0,
        "{name}: expect-status is missing"
    );
    fixture
}
