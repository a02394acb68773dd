//! `face-enroll sandbox`: the local emulator of the MTS and ICE APIs in the foreground, until
//! Ctrl-C or SIGTERM; the first stdout line is its base URL.

use std::future::Future;
use std::io::Write;

use anyhow::Context;

use crate::cli::sandbox::SandboxArgs;
use crate::exit::Exit;
use crate::sandbox::Sandbox;

/// Serves until a signal; a sandbox that cannot start is a usage error.
pub async fn command(args: SandboxArgs) -> Exit {
    match serve(args).await {
        Ok(()) => Exit::Success,
        Err(e) => {
            crate::say!("face-enroll sandbox: {e:#}");
            Exit::Usage
        }
    }
}

/// Runs the sandbox until SIGINT or SIGTERM. The first stdout line is the base URL.
pub async fn serve(args: SandboxArgs) -> anyhow::Result<()> {
    serve_until(args, &mut std::io::stdout(), wait_for_signal()).await
}

/// [`serve`] with the announcement written to `out` and `stop` in place of the signals.
async fn serve_until(
    args: SandboxArgs,
    out: &mut (dyn Write + Send),
    stop: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let (config, state_file) = args.into_config()?;
    let credentials = format!(
        "credentials: access key id {}, secret {}",
        config.access_key_id, config.access_key_secret
    );
    let sts = format!(
        "STS: role {}, OIDC provider {}; ECS metadata: role {}; temporary credentials live {} s",
        config.role_arn,
        config.oidc_provider_arn,
        config.ecs_role_name,
        config.sts_lifetime.as_secs()
    );
    let mut exports = vec![
        format!(
            "export ALIBABA_CLOUD_ACCESS_KEY_ID={}",
            shell_quote(&config.access_key_id)
        ),
        format!(
            "export ALIBABA_CLOUD_ACCESS_KEY_SECRET={}",
            shell_quote(&config.access_key_secret)
        ),
    ];
    if let Some(token) = &config.security_token {
        exports.push(format!(
            "export ALIBABA_CLOUD_SECURITY_TOKEN={}",
            shell_quote(token)
        ));
    }
    let oss = format!(
        "OSS: objects path-style at <url>BUCKET/KEY, kept {}; buckets: {}; signatures for {}",
        config
            .oss
            .root
            .as_ref()
            .map_or("in memory".to_string(), |dir| format!(
                "in {}",
                dir.display()
            )),
        if config.oss.buckets.is_empty() {
            "any valid name".to_string()
        } else {
            config.oss.buckets.join(", ")
        },
        config.oss.region.as_deref().unwrap_or("any region"),
    );
    let listen = config.listen;
    let sandbox = Sandbox::start(config)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    writeln!(out, "{}", sandbox.base_url())?;
    out.flush()?;
    writeln!(out, "{credentials}")?;
    for line in &exports {
        writeln!(out, "{line}")?;
    }
    writeln!(out, "{sts}")?;
    writeln!(out, "{oss}")?;
    writeln!(
        out,
        "emulating MTS 2014-06-18 custom faces and ICE 2020-11-09 recognition libraries; Ctrl-C stops"
    )?;
    out.flush()?;
    let stopped = stop.await;
    let snapshot = sandbox.shutdown_and_snapshot().await;
    if let Some(path) = state_file {
        let json = serde_json::to_vec_pretty(&snapshot)?;
        std::fs::write(&path, json)
            .with_context(|| format!("cannot write the state file {}", path.display()))?;
    }
    stopped
}

/// A value a POSIX shell reads back as it is: bare when it is safe, else in single quotes.
fn shell_quote(value: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+".contains(c);
    if !value.is_empty() && value.chars().all(safe) {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: SandboxArgs,
    }

    fn parse(flags: &[&str]) -> Result<SandboxArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("sandbox").chain(flags.iter().copied()))
            .map(|cli| cli.args)
    }

    #[tokio::test]
    async fn serving_announces_the_url_first_and_writes_the_state_file_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        let state_path = dir.path().join("state.json");
        let state_flag = state_path.to_str().unwrap();
        let args = parse(&["--listen", "127.0.0.1:0", "--state-file", state_flag]).unwrap();
        let mut out = Vec::new();
        let stop = async { Ok(()) };
        serve_until(args, &mut out, stop).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("http://127.0.0.1:") && lines[0].ends_with('/'),
            "{text}"
        );
        assert_eq!(
            lines[1],
            "credentials: access key id sandbox-key-id, secret sandbox-key-secret"
        );
        assert_eq!(
            lines[2..4],
            [
                "export ALIBABA_CLOUD_ACCESS_KEY_ID=sandbox-key-id",
                "export ALIBABA_CLOUD_ACCESS_KEY_SECRET=sandbox-key-secret"
            ]
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("OSS: objects path-style")
                    && l.contains("in memory")
                    && l.contains("any region")),
            "{text}"
        );
        let state: crate::sandbox::StateSnapshot =
            serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
        assert_eq!(state, crate::sandbox::StateSnapshot::default());
    }

    #[test]
    fn a_value_with_a_quote_is_quoted_for_the_shell() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
