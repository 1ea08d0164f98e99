use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use shipit::cli::Cli;
use shipit::cmd::{self, App};
use shipit::outcome::exit_code;
use shipit::report::World;

fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shipit: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let status = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let status_for_signals = status.clone();
        // SIGINT and SIGTERM (a Jenkins abort) ask the run to stop starting
        // work, undo, unlock and exit 130.
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let mut count = 0;
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                count += 1;
                if count == 1 {
                    let _ = tx.send(true);
                } else {
                    let doing = status_for_signals
                        .lock()
                        .map(|s| s.clone())
                        .unwrap_or_default();
                    let doing = if doing.is_empty() {
                        "letting running steps finish".to_string()
                    } else {
                        doing
                    };
                    eprintln!(
                        "shipit: still stopping ({doing}); wait for it so no host is left half-done (SIGKILL would leave the lock and possibly a half-switched fleet)"
                    );
                }
            }
        });
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let world = World::from_env(|k| env.get(k).cloned(), std::io::stdout().is_terminal());
        let app = App {
            global: cli.global.clone(),
            env,
            now: chrono::Utc::now(),
            world,
            shutdown: rx,
            pid: std::process::id(),
            machine: machine_name(),
            status,
        };
        cmd::run(cli, app).await
    });
    let code = exit_code(&result);
    if let Err(e) = &result {
        eprintln!("shipit: {e:#}");
    }
    ExitCode::from(code)
}
