//! `face-enroll man DIR` (hidden): the manual pages — one for the tool, one per subcommand — from
//! the same flag definitions as `--help` and the completions. The repository keeps them in
//! `doc/man/`, and a test fails when a committed page differs from what this renders.

use std::path::Path;

use crate::exit::Exit;

/// Every page as (file name, roff text), the tool's first, then its subcommands depth first;
/// hidden subcommands (this one) get none.
pub fn pages() -> Vec<(String, Vec<u8>)> {
    let command = <crate::cli::Cli as clap::CommandFactory>::command()
        .disable_help_subcommand(true)
        .name("face-enroll");
    let mut command = command;
    command.build();
    let mut out = Vec::new();
    collect(&command, &mut out);
    out
}

fn collect(command: &clap::Command, out: &mut Vec<(String, Vec<u8>)>) {
    let man = clap_mangen::Man::new(command.clone());
    let mut text = Vec::new();
    // Rendering into memory cannot fail.
    let _ = man.render(&mut text);
    out.push((man.get_filename(), text));
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out);
    }
}

/// Writes every page into `dir` (created if missing) and removes pages of subcommands that no
/// longer exist, so the folder is exactly what `pages` renders.
pub fn write(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let pages = pages();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".1") && !pages.iter().any(|(page, _)| page == name) {
            std::fs::remove_file(&path)?;
        }
    }
    for (name, text) in &pages {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(pages.len())
}

pub fn command(args: crate::cli::ops::ManArgs) -> Exit {
    match write(&args.dir) {
        Ok(n) => {
            crate::say!(
                "face-enroll man: {n} pages written to {}",
                args.dir.display()
            );
            Exit::Success
        }
        Err(e) => super::fail(format!(
            "cannot write the manual pages to {}: {e}",
            args.dir.display()
        )),
    }
}
