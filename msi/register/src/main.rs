//! `ancm-register install|uninstall [--config PATH] [--dll PATH] [--schema PATH] [--product CODE]`:
//! the MSI's registration step.
//!
//! Exit codes: 0 done (including "nothing to do"), 1 a file could not be read or written,
//! 2 usage error, 3 the configuration or state file's content was not understood. Errors are one
//! line on stderr naming the file; Windows Installer writes them to its log.

use ancm_register::{edit, install, uninstall, Paths};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: ancm-register install|uninstall [--config PATH] [--dll PATH] [--schema PATH]
  --config PATH  applicationHost.config to edit
                 (default %windir%\\System32\\inetsrv\\config\\applicationHost.config)
  --dll PATH     install: the module DLL path written into globalModules
                 (default %windir%\\System32\\inetsrv\\aspnetcore_rs.dll, %windir% kept literally)
  --schema PATH  install: the IIS schema file to copy into the schema directory beside the config
                 unless Microsoft's ANCM schema is there (default: aspnetcore_rs_schema.xml next
                 to this program, where the MSI puts it)
  --product CODE the calling MSI's ProductCode: install records it as the owner; uninstall
                 removes nothing when another product owns the registration (major upgrades)";

enum Command {
    Install,
    Uninstall,
}

struct Args {
    command: Command,
    config: PathBuf,
    dll: String,
    schema: Option<PathBuf>,
    product: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let command = match args.first().map(String::as_str) {
        Some("install") => Command::Install,
        Some("uninstall") => Command::Uninstall,
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("missing command".into()),
    };
    let mut config = None;
    let mut dll = None;
    let mut schema = None;
    let mut product = None;
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let slot = match arg.as_str() {
            "--config" => &mut config,
            "--dll" => &mut dll,
            "--schema" => &mut schema,
            "--product" => &mut product,
            other => return Err(format!("unknown argument {other:?}")),
        };
        match rest.next() {
            Some(value) if !value.is_empty() => *slot = Some(value.clone()),
            _ => return Err(format!("{arg} needs a value")),
        }
    }
    if (dll.is_some() || schema.is_some()) && matches!(command, Command::Uninstall) {
        return Err("--dll and --schema apply to install only".into());
    }
    let schema = match (&command, schema) {
        (Command::Uninstall, _) => None,
        (Command::Install, Some(path)) => Some(PathBuf::from(path)),
        (Command::Install, None) => Some(default_schema()?),
    };
    let config = match config {
        Some(path) => PathBuf::from(path),
        None => default_config()?,
    };
    Ok(Args {
        command,
        config,
        dll: dll.unwrap_or_else(|| edit::DEFAULT_IMAGE.to_string()),
        schema,
        product,
    })
}

/// `%windir%\System32\inetsrv\config\applicationHost.config`. The helper is a 64-bit program,
/// so System32 is the real one, not the WOW64-redirected SysWOW64.
fn default_config() -> Result<PathBuf, String> {
    let windir = std::env::var_os("windir")
        .or_else(|| std::env::var_os("SystemRoot"))
        .ok_or("no --config given and %windir% is not set")?;
    Ok(PathBuf::from(windir)
        .join("System32")
        .join("inetsrv")
        .join("config")
        .join("applicationHost.config"))
}

/// The schema file the MSI installs next to this program.
fn default_schema() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
    let dir = exe
        .parent()
        .ok_or("cannot locate this program's directory")?;
    Ok(dir.join(ancm_register::SCHEMA_FILE))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(
        args.first().map(String::as_str),
        Some("help" | "--help" | "-h")
    ) {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(&args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("ancm-register: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut paths = Paths::beside(args.config);
    paths.schema_source = args.schema;
    let (verb, result) = match args.command {
        Command::Install => (
            "install",
            install(&paths, &args.dll, args.product.as_deref()),
        ),
        Command::Uninstall => ("uninstall", uninstall(&paths, args.product.as_deref())),
    };
    match result {
        Ok(report) => {
            let what = if report.changed {
                report.changes.join(", ")
            } else if matches!(args.command, Command::Install) {
                "already registered, nothing changed".to_string()
            } else if !report.notes.is_empty() {
                "nothing changed".to_string()
            } else {
                "not registered, nothing changed".to_string()
            };
            println!("ancm-register {verb}: {}: {what}", paths.config.display());
            for note in report.notes {
                println!("ancm-register {verb}: note: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ancm-register {verb}: {e}");
            ExitCode::from(e.kind.exit_code())
        }
    }
}
