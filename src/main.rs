use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use shipit::cli::Cli;
use shipit::cmd::{self, App};
use shipit::outcome::exit_code;
use shipit::redact::Redactor;
use shipit::report::{json, output, Format, Output, World};

fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Ends the program early, before a command ran: the message on stderr
/// and, in json mode, as the stream's last line.
fn refuse(format: Format, message: &str, code: u8) -> ExitCode {
    eprintln!("shipit: {message}");
    if format == Format::Json {
        println!("{}", json::line(&json::error(message, code)));
    }
    ExitCode::from(code)
}

/// Without `-c`, the nearest `deploy.yml` in this directory or a parent
/// (up to the repository's root) is the config file; with `-v`, says on
/// stderr which file that is.
fn locate_config(global: &mut shipit::cli::Global, matches: &clap::ArgMatches) {
    use shipit::config::find;
    let given = matches.value_source("config") != Some(clap::parser::ValueSource::DefaultValue);
    let cwd = std::env::current_dir().ok();
    if !given {
        // Found here, it keeps its short name in messages.
        if let Some(cwd) = cwd.as_deref() {
            match find::find_upward(cwd, find::DEFAULT_NAME) {
                Some(found) if found.parent() != Some(cwd) => global.config = found,
                _ => {}
            }
        }
    }
    if global.verbose {
        let shown = match &cwd {
            Some(cwd) if global.config.is_relative() => cwd.join(&global.config),
            _ => global.config.clone(),
        };
        eprintln!("shipit: config file {}", shown.display());
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let command_name = matches.subcommand_name().unwrap_or("shipit").to_string();
    // Format, colour and JUnit file: a pure choice from flags and world.
    let mut output = Output::choose(
        cli.global.format,
        World::from_env(|k| std::env::var(k).ok(), std::io::stdout().is_terminal()),
        cli.global.junit.clone(),
        &command_name,
    );
    output.verbosity = output::Verbosity::from_flags(cli.global.quiet, cli.global.verbose);
    if let Some(why) =
        output::unsupported(&command_name, cli.global.format, cli.global.junit.is_some())
    {
        return refuse(output.format, &why, 2);
    }
    // SHIPIT_LOG: diagnostic logs on stderr, redacted from the start.
    let log_secrets = {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        shipit::logging::LogSecrets::new(Redactor::for_env([], &env))
    };
    match shipit::logging::level(std::env::var("SHIPIT_LOG").ok().as_deref()) {
        Ok(None) => {}
        Ok(Some(level)) => {
            if let Err(why) = shipit::logging::init(level, log_secrets.clone()) {
                return refuse(output.format, &why, 1);
            }
            tracing::debug!(command = %command_name, version = env!("CARGO_PKG_VERSION"), "shipit starts");
        }
        Err(why) => return refuse(output.format, &why, 2),
    }
    // Completions, manual pages, the schema: text made from shipit itself.
    if let Some(generated) = cmd::generated(&cli.command) {
        return match generated {
            Ok(text) => {
                use std::io::Write as _;
                match std::io::stdout().lock().write_all(&text) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => refuse(output.format, &format!("cannot write: {e}"), 1),
                }
            }
            Err(e) => {
                let message = format!("{e:#}");
                refuse(output.format, &message, exit_code(&Err(e)))
            }
        };
    }
    if !matches!(cli.command, shipit::cli::Command::Init { .. }) {
        locate_config(&mut cli.global, &matches);
    }
    if let Some(j) = &output.junit {
        if let Err(e) = j.start() {
            let why = format!("cannot write the JUnit report `{}`: {e}", j.path.display());
            return refuse(output.format, &why, 2);
        }
    }
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
        let output_for_signals = output.clone();
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
                    // Still loading, planning, resolving: nothing to undo,
                    // so nothing to wait for.
                    shipit::quick_exit::exit_if_nothing_changed(130, || {
                        interrupted_before_changes(&output_for_signals)
                    });
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
            output: output.clone(),
            stdout: std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout())),
            interactive: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
            log_secrets,
        };
        cmd::run(cli, app).await
    });
    // Nothing may still write to stdout after this (the reporter of a
    // command that ended with an error, say).
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    let code = exit_code(&result);
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    if let Some(e) = &error {
        eprintln!("shipit: {e}");
        if output.format == Format::Json {
            println!("{}", json::line(&json::error(e, code)));
        }
    }
    if let Some(j) = &output.junit {
        if let Err(e) = j.finish(error.as_deref()) {
            eprintln!(
                "shipit: cannot write the JUnit report `{}`: {e}",
                j.path.display()
            );
        }
    }
    ExitCode::from(code)
}

/// What a run stopped by a signal before it changed anything says, in
/// each of its reports.
fn interrupted_before_changes(output: &Output) {
    const WHY: &str = "interrupted before anything changed (nothing was connected to or written)";
    eprintln!("shipit: {WHY}");
    if output.format == Format::Json {
        println!("{}", json::line(&json::error(WHY, 130)));
    }
    if let Some(j) = &output.junit {
        let _ = j.finish(Some(WHY));
    }
}
