//! Copies `core/src` into `OUT_DIR`, breaks one ordering rule in the upload queue
//! and one in the deletion queue, and writes `mutant_lib.rs`: core's `lib.rs` with
//! every top-level module pointed at the copy. Each mutation must apply exactly once:
//! when core's code moves, this build fails and names the mutation to update.

use std::fs;
use std::path::{Path, PathBuf};

/// (file under core/src, text to find, replacement, what the mutation breaks).
const MUTATIONS: &[(&str, &str, &str, &str)] = &[
    (
        "upload_queue/pump.rs",
        "let ready = *ticket <= durable_ticket && !uploading && !handed.contains(&key);",
        "let ready = { let _ = (ticket, durable_ticket); !uploading && !handed.contains(&key) };",
        "S-DEL-AFTER-INDEX: an unlinked layer is handed to the deletion queue before an \
         index without it is durable",
    ),
    (
        "deletion_queue/completions.rs",
        "                for (_, report) in ready {
                    self.effects.push_back(DeletionEffect::Report(report));
                }
            }",
        "                for (_, report) in ready {
                    self.effects.push_back(DeletionEffect::Report(report));
                }
                if let Some(list) = self.lists.get_mut(&seq)
                    && list.stage == Stage::Sealed
                {
                    list.content.validated = true;
                    self.start_executing(seq);
                }
            }",
        "validate before execute: a list executes as soon as it is durable, before any \
         validation of its generation",
    ),
];

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else if src.extension().is_some_and(|e| e == "rs") {
            fs::copy(&src, &dst).expect("copy");
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let core_src = manifest.join("../../core/src").canonicalize().expect("core/src");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("src");
    println!("cargo:rerun-if-changed={}", core_src.display());
    println!("cargo:rerun-if-changed=build.rs");
    let _ = fs::remove_dir_all(&out);
    copy_dir(&core_src, &out);
    for (file, find, replace, what) in MUTATIONS {
        let path = out.join(file);
        let text = fs::read_to_string(&path).expect("read");
        let n = text.matches(find).count();
        assert_eq!(n, 1, "mutation {what:?}: {file} holds the text {n} times, not once");
        fs::write(&path, text.replacen(find, replace, 1)).expect("write");
    }
    let lib = fs::read_to_string(core_src.join("lib.rs")).expect("lib.rs");
    let mut generated = String::new();
    for line in lib.lines() {
        // Module docs and crate-level attributes (`#![...]`) cannot stand in an
        // included file; the mutant crate sets its own.
        if line.starts_with("//!") || line.starts_with("#![") {
            continue;
        }
        let name = line.strip_prefix("pub mod ").and_then(|l| l.strip_suffix(';'));
        match name {
            Some(name) => {
                let dir = out.join(name).join("mod.rs");
                let file = if dir.exists() { dir } else { out.join(format!("{name}.rs")) };
                generated.push_str(&format!("#[path = {:?}]\npub mod {name};\n", file));
            }
            None => {
                generated.push_str(line);
                generated.push('\n');
            }
        }
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("mutant_lib.rs");
    fs::write(dest, generated).expect("write mutant_lib.rs");
}
