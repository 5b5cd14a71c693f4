//! Replays every input in `fuzz/regressions/<target>/` (each crash or hang
//! the fuzzers ever found, kept after its fix) and the seed corpora
//! `fuzz/corpus/<target>/seed-*` through the same code as the fuzz targets,
//! as a normal `cargo test`.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("handshake", palisade::fuzzing::handshake),
    ("frame_decode", palisade::fuzzing::frame_decode),
    ("connection", palisade::fuzzing::connection),
    ("utf8", palisade::fuzzing::utf8),
    ("jwt", palisade::fuzzing::jwt),
    ("dispatch", palisade::fuzzing::dispatch),
    ("http_request", palisade::fuzzing::http_request),
    ("socketio_packet", palisade::fuzzing::socketio_packet),
    ("engineio_payload", palisade::fuzzing::engineio_payload),
    ("resp", palisade::fuzzing::resp),
    ("adapter", palisade::fuzzing::adapter),
    ("socketio_session", palisade::fuzzing::socketio_session),
];

fn inputs(dir: &Path, seeds_only: bool) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && (!seeds_only || name.starts_with("seed-"))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(&p).expect("read input"),
            )
        })
        .collect()
}

#[test]
fn regressions_and_seeds_replay_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (name, target) in TARGETS {
        let regressions = inputs(&root.join("regressions").join(name), false);
        let seeds = inputs(&root.join("corpus").join(name), true);
        assert!(!seeds.is_empty(), "no seeds for {name}");
        for (path, data) in regressions.iter().chain(&seeds) {
            let r = std::panic::catch_unwind(|| target(data));
            assert!(r.is_ok(), "{name}: {path} fails");
        }
        eprintln!(
            "{name}: {} regressions, {} seeds",
            regressions.len(),
            seeds.len()
        );
        total += regressions.len() + seeds.len();
    }
    eprintln!("{total} inputs replayed");
}

#[test]
fn every_target_has_a_regressions_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for (name, _) in TARGETS {
        assert!(
            root.join(name).is_dir(),
            "fuzz/regressions/{name} is missing"
        );
    }
}
