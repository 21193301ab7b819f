//! The real `imgsvc serve` as a child process, on an ephemeral port.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_imgsvc");

/// Variables that choose the stores, the secret or the sandbox: removed from every `imgsvc`
/// a test spawns, so the shell a test runs in can't change what it tests. A test that wants
/// one sets it explicitly (after this removal).
const CHOOSERS: [&str; 8] = [
    "IMGSVC_S3_BUCKET",
    "IMGSVC_DYNAMODB_TABLE",
    "IMGSVC_LEGACY_DATABASE_URL",
    "IMGSVC_JWT_SECRET",
    "IMGSVC_SANDBOX",
    "IMGSVC_SANDBOX_MODULE",
    "IMGSVC_SANDBOX_TIMEOUT_MS",
    "IMGSVC_SANDBOX_MEMORY_MB",
];

/// `command` without the [`CHOOSERS`] of this process's environment.
pub fn hermetic(command: &mut Command) -> &mut Command {
    for name in CHOOSERS {
        command.env_remove(name);
    }
    command
}

/// `command` (the binary, or a wrapper that execs it) given the `serve` arguments for an
/// ephemeral port and `data`, hermetic.
pub fn serve_args(mut command: Command, data: &Path) -> Command {
    command
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data);
    hermetic(&mut command);
    command
}

/// `imgsvc serve` on an ephemeral port and `data` (not started).
pub fn serve_command(data: &Path) -> Command {
    serve_args(Command::new(BIN), data)
}

/// A running `imgsvc serve`; killed on drop.
pub struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub data: tempfile::TempDir,
    tokens: Mutex<HashMap<String, String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// `imgsvc serve` on a fresh data directory with `env` set.
    pub fn start(env: &[(&str, &OsStr)]) -> Served {
        Self::spawn(tempfile::tempdir().unwrap(), Command::new(BIN), env)
    }

    /// `command` (the binary, or a wrapper that execs it) serving `data` with `env` set;
    /// returns once it says where it listens.
    pub fn spawn(data: tempfile::TempDir, command: Command, env: &[(&str, &OsStr)]) -> Served {
        let mut command = serve_args(command, data.path());
        command.stdout(Stdio::piped()).stderr(Stdio::null());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Served {
            child,
            url,
            data,
            tokens: Mutex::default(),
        }
    }

    /// A token for `user`, signed with this server's secret (`imgsvc token`, once per user).
    pub fn token(&self, user: &str) -> String {
        let mut tokens = self.tokens.lock().unwrap();
        if let Some(token) = tokens.get(user) {
            return token.clone();
        }
        let mut command = Command::new(BIN);
        command
            .args(["token", "--user", user, "--data-dir"])
            .arg(self.data.path());
        let output = hermetic(&mut command).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        tokens.insert(user.to_owned(), token.clone());
        token
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}
