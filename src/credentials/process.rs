//! The `External` profile mode: a command that prints credentials as JSON
//! (`{"mode","access_key_id","access_key_secret","sts_token","expiration"}`), run again whenever
//! they are due for renewal. Its output is a secret: errors never quote it.

use std::process::Stdio;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use super::provider::{Fetch, Issued};
use super::{Credentials, CredentialsError, Secret};

/// How long the command may run, as in the official libraries.
const TIMEOUT: Duration = Duration::from_secs(60);
/// More output than this is not credentials.
const MAX_OUTPUT: usize = 64 * 1024;

pub(crate) struct External {
    /// The command line, split like a shell would (quotes, backslashes), never run by a shell.
    argv: Vec<String>,
    /// The program's name, for messages (the arguments may hold secrets).
    shown: String,
}

impl External {
    pub fn new(command: &str, profile: &str) -> Result<External, CredentialsError> {
        let argv =
            split(command)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| CredentialsError::External {
                    command: profile.to_string(),
                    reason: "process_command is empty or has an unclosed quote".to_string(),
                })?;
        Ok(External {
            shown: argv[0].clone(),
            argv,
        })
    }

    fn failed(&self, reason: impl Into<String>) -> CredentialsError {
        CredentialsError::External {
            command: self.shown.clone(),
            reason: reason.into(),
        }
    }

    async fn run(&self) -> Result<Vec<u8>, CredentialsError> {
        let child = tokio::process::Command::new(&self.argv[0])
            .args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.failed(format!("cannot be started ({e})")))?;
        let output = tokio::time::timeout(TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                self.failed(format!(
                    "did not finish within {} s and was killed",
                    TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| self.failed(format!("failed while running ({e})")))?;
        if !output.status.success() {
            return Err(self.failed(format!(
                "exited with {}; run it by hand to see why",
                output.status
            )));
        }
        if output.stdout.len() > MAX_OUTPUT {
            return Err(self.failed("printed more than 64 KiB"));
        }
        Ok(output.stdout)
    }
}

impl Fetch for External {
    fn fetch(&self) -> BoxFuture<'_, Result<Issued, CredentialsError>> {
        Box::pin(async move {
            let stdout = self.run().await?;
            parse_output(&stdout).map_err(|reason| self.failed(reason.0))
        })
    }
}

/// Reads the command's JSON; the reason never quotes the output.
fn parse_output(stdout: &[u8]) -> Result<Issued, super::error::Malformed> {
    const SHAPE: &str =
        "{\"mode\", \"access_key_id\", \"access_key_secret\", \"sts_token\", \"expiration\"}";
    let doc: Value = serde_json::from_slice(stdout).map_err(|_| {
        format!(
            "did not print JSON (expected {SHAPE}; its output is not shown, it may hold secrets)"
        )
    })?;
    let text = |name: &str| {
        doc.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let missing = |name: &str| format!("printed JSON without {name} (expected {SHAPE})");
    let mode = text("mode").unwrap_or_else(|| "AK".to_string());
    let security_token = match mode.as_str() {
        "AK" => None,
        "StsToken" => Some(Secret::new(
            text("sts_token").ok_or_else(|| missing("sts_token"))?,
        )),
        _ => {
            return Err(
                format!("printed mode '{mode}'; only AK and StsToken are understood").into(),
            );
        }
    };
    let expiration = match text("expiration") {
        Some(at) => Some(crate::clock::parse(&at).ok_or_else(|| {
            "printed an expiration that is not a time like 2026-12-01T10:00:00Z".to_string()
        })?),
        None => None,
    };
    Ok(Issued {
        credentials: Credentials {
            access_key_id: text("access_key_id").ok_or_else(|| missing("access_key_id"))?,
            access_key_secret: Secret::new(
                text("access_key_secret").ok_or_else(|| missing("access_key_secret"))?,
            ),
            security_token,
        },
        expiration,
    })
}

/// Splits a command line into words: blanks separate, `'…'` and `"…"` group, `\` escapes.
/// `None` on an unclosed quote.
fn split(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => word.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => match chars.next()? {
                            c @ ('"' | '\\' | '$' | '`') => word.push(c),
                            '\n' => {}
                            c => {
                                word.push('\\');
                                word.push(c);
                            }
                        },
                        c => word.push(c),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_a_shell_without_running_one() {
        assert_eq!(
            split(r#"/bin/get-creds --profile 'my role' "a \"b\"" c\ d"#).unwrap(),
            ["/bin/get-creds", "--profile", "my role", "a \"b\"", "c d"]
        );
        assert_eq!(split("  ").unwrap(), Vec::<String>::new());
        assert!(split("x 'open").is_none());
    }

    #[test]
    fn sts_output_gives_temporary_credentials_with_their_expiry() {
        let out = br#"{"mode":"StsToken","access_key_id":"STS.id","access_key_secret":"s","sts_token":"t","expiration":"2030-01-02T03:04:05Z"}"#;
        let issued = parse_output(out).unwrap();
        assert_eq!(issued.credentials.access_key_id, "STS.id");
        assert_eq!(issued.credentials.security_token.unwrap().expose(), "t");
        assert_eq!(issued.expiration.unwrap().year(), 2030);
    }

    #[test]
    fn output_that_is_not_the_json_is_refused_without_quoting_it() {
        for out in [
            &b"canary-secret"[..],
            br#"{"mode":"StsToken","access_key_id":"i","access_key_secret":"canary-secret"}"#,
        ] {
            let reason = parse_output(out).unwrap_err();
            assert!(!reason.0.contains("canary"), "{reason}");
        }
    }

    #[tokio::test]
    async fn a_failing_or_silent_command_is_an_error_naming_the_program_only() {
        let failing = External::new("false canary-arg", "p").unwrap();
        let err = failing.fetch().await.unwrap_err().to_string();
        assert!(
            err.contains("'false'") && err.contains("exited") && !err.contains("canary"),
            "{err}"
        );
        let silent = External::new("true", "p").unwrap();
        let err = silent.fetch().await.unwrap_err().to_string();
        assert!(err.contains("did not print JSON"), "{err}");
        let missing = External::new("/nonexistent/face-enroll-helper", "p").unwrap();
        let err = missing.fetch().await.unwrap_err().to_string();
        assert!(err.contains("cannot be started"), "{err}");
    }
}
