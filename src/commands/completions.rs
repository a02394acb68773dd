//! `face-enroll completions`: shell completion scripts from the flag definitions, with two
//! faults of clap_complete's bash script mended.

use crate::exit::Exit;

pub fn command(args: crate::cli::ops::CompletionsArgs) -> Exit {
    let mut command = <crate::cli::Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "face-enroll", &mut script);
    if args.shell == clap_complete::Shell::Bash {
        command.build();
        script = fix_bash(&String::from_utf8_lossy(&script), &command).into_bytes();
    }
    super::print_out(&script);
    Exit::Success
}

/// Two faults of clap_complete's bash script: for a name with a hyphen its case labels
/// (`face__subcmd__enroll__subcmd__check`) differ from the names its dispatch loop builds
/// (`face__enroll__subcmd__check`), so no subcommand's flags were ever completed; and it offers
/// hidden flags (test switches). Both are mended here.
fn fix_bash(script: &str, command: &clap::Command) -> String {
    let script = script.replace("face__subcmd__enroll", "face__enroll");
    let mut hidden = std::collections::HashMap::new();
    hidden_flags(command, "face__enroll".to_string(), &mut hidden);
    let mut block = String::new();
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_suffix(')')
            && hidden.contains_key(name)
        {
            block = name.to_string();
        }
        match (trimmed.strip_prefix("opts=\""), hidden.get(&block)) {
            (Some(rest), Some(flags)) if !flags.is_empty() => {
                let indent = &line[..line.len() - line.trim_start().len()];
                let kept: Vec<&str> = rest
                    .trim_end_matches('"')
                    .split(' ')
                    .filter(|word| !flags.iter().any(|f| f == word))
                    .collect();
                out.push_str(&format!("{indent}opts=\"{}\"", kept.join(" ")));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn hidden_flags(
    command: &clap::Command,
    block: String,
    out: &mut std::collections::HashMap<String, Vec<String>>,
) {
    let flags = command
        .get_arguments()
        .filter(|a| a.is_hide_set())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    for sub in command.get_subcommands() {
        let name = sub.get_name().replace('-', "_");
        hidden_flags(sub, format!("{block}__subcmd__{name}"), out);
    }
    out.insert(block, flags);
}
