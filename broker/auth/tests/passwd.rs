//! `ironsight-passwd`, the built binary, fed through a pipe as a script would: what it prints
//! is taken by the configuration and verifies with the users file.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use ironsight_auth::{Directory, UserRegistry};
use ironsight_config::users::ScramVerifier;
use ironsight_config::Config;
use ironsight_core::auth::Refusal;

/// Runs the tool with `args`, writing `input` to its standard input.
fn passwd(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ironsight-passwd"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ironsight-passwd starts");
    // The tool may refuse its arguments and exit before it reads: a closed pipe is no failure.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// A configuration of the built-in one with `users` added.
fn config(users: serde_json::Value) -> Config {
    let mut doc: serde_json::Value =
        serde_json::from_str(ironsight_config::DEFAULT_CONFIG).unwrap();
    for (k, v) in users.as_object().unwrap() {
        doc[k] = v.clone();
    }
    Config::parse(&doc.to_string()).unwrap()
}

/// Proves a piped password gives a verifier on one line, with the default cost and a salt of
/// its own each time, which the users file accepts and checks the password against.
#[tokio::test]
async fn the_verifier_checks_the_password() {
    let first = stdout(&passwd(&[], b"correct horse\n"));
    let second = stdout(&passwd(&["--stdin"], b"correct horse"));
    assert!(first.ends_with('\n') && first.lines().count() == 1);
    let verifier: ScramVerifier = first.trim_end().parse().unwrap();
    assert_eq!(verifier.iterations().get(), 4096);
    assert_ne!(first, second, "each verifier has its own salt");
    let users = UserRegistry::from_config(&config(serde_json::json!({
        "MessagingUser": {
            "alice": {"Password": first.trim_end()},
            "bob": {"Password": second.trim_end()},
        },
    })));
    assert!(users.verify("alice", b"correct horse").await.is_ok());
    assert!(users.verify("bob", b"correct horse").await.is_ok());
    assert_eq!(
        users.verify("alice", b"correct horse\n").await,
        Err(Refusal::BadCredentials)
    );
}

/// Proves `--user` and `--groups` print a MessagingUser object that the configuration takes
/// as it is, and that a line ending in CR LF loses both.
#[tokio::test]
async fn the_snippet_is_a_configuration_object() {
    let snippet = stdout(&passwd(
        &[
            "--user",
            "a/b \"c\"",
            "--groups",
            "ops",
            "--iterations",
            "5000",
        ],
        b"pencil\r\n",
    ));
    let mut users: serde_json::Value = serde_json::from_str(&snippet).unwrap();
    users["MessagingGroup"] = serde_json::json!({"ops": {}});
    let config = config(users);
    let user = &config.users.users["a/b \"c\""];
    assert_eq!(user.password.iterations().get(), 5000);
    assert_eq!(user.group_membership, ["ops"]);
    let registry = UserRegistry::from_config(&config);
    let principal = registry.verify("a/b \"c\"", b"pencil").await.unwrap();
    assert!(principal.in_group("ops"));
}

/// Proves the tool refuses an empty password, a cost out of bounds and a password longer
/// than MQTT carries, each with a message and a failing exit status.
#[test]
fn bad_input_is_refused() {
    let cases: [(&[&str], Vec<u8>, &str); 4] = [
        (
            &[],
            b"\n".to_vec(),
            "ironsight-passwd: the password is empty\n",
        ),
        (&[], Vec::new(), "ironsight-passwd: the password is empty\n"),
        (
            &["--iterations", "1000"],
            b"pencil\n".to_vec(),
            "ironsight-passwd: --iterations: a verifier has 1000 iterations; use 4096 to 1000000\n",
        ),
        (
            &[],
            vec![b'x'; 65_536],
            "ironsight-passwd: the password is longer than 65535 bytes, the most MQTT carries\n",
        ),
    ];
    for (args, input, expected) in cases {
        let output = passwd(args, &input);
        assert!(!output.status.success());
        assert!(output.stdout.is_empty());
        assert_eq!(String::from_utf8_lossy(&output.stderr), expected);
    }
    let output = passwd(&["--groups", "ops"], b"pencil\n");
    assert!(!output.status.success(), "--groups needs --user");
}
