//! What to start: the program, its arguments, environment and working directory, derived from
//! the configuration as ANCM derives them (ancm-behaviour.md §1–2).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::token::Token;
use crate::config::{Config, Dialect};
use crate::host::HostInfo;

/// Everything needed to create one backend process.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The program: a resolved path, or a bare name to be looked up on PATH.
    pub program: PathBuf,
    /// The arguments, already split (Unix); on Windows the raw `arguments` string.
    pub args: Args,
    /// The complete environment of the child.
    pub env: Vec<(OsString, OsString)>,
    /// The child's working directory (the site root).
    pub cwd: PathBuf,
}

/// The system's `cmd.exe` (found through `SystemRoot`).
#[cfg(all(test, windows))]
pub(crate) fn system_cmd_exe() -> PathBuf {
    let system = std::env::var_os("SystemRoot").unwrap_or_else(|| "C:\\windows".into());
    PathBuf::from(system).join("system32").join("cmd.exe")
}

#[cfg(all(test, windows))]
impl LaunchSpec {
    /// `cmd.exe` with the raw arguments `args`, this process's environment, in the temporary
    /// folder: a child for Windows tests.
    pub(crate) fn cmd(args: &str) -> LaunchSpec {
        LaunchSpec {
            program: system_cmd_exe(),
            args: Args::Raw(args.into()),
            env: std::env::vars_os().collect(),
            cwd: std::env::temp_dir(),
        }
    }
}

/// The arguments, in the form the platform passes them.
#[derive(Debug, Clone)]
pub enum Args {
    /// One argument per element (Unix).
    Split(Vec<String>),
    /// One command-line string, appended after the quoted program (Windows).
    Raw(String),
}

/// The app's settings that end up in the child's environment.
const HOSTING_STARTUP: &str = "ASPNETCORE_HOSTINGSTARTUPASSEMBLIES";
const IIS_INTEGRATION: &str = "Microsoft.AspNetCore.Server.IISIntegration";

/// Normalizes a path written for Windows (`.\bin\app`) for the platform we run on.
pub fn native_path(p: &str) -> String {
    if cfg!(windows) {
        p.to_owned()
    } else {
        p.replace('\\', "/")
    }
}

/// Resolves processPath as ANCM does: a plain relative path is tried under the site root and
/// used only if that file exists; anything else goes to process creation unchanged (which
/// searches PATH, so `processPath="dotnet"` works).
pub fn resolve_program(process_path: &str, site_root: &Path) -> PathBuf {
    let native = native_path(process_path);
    let candidate = Path::new(&native);
    if candidate.is_relative() {
        let under_root = site_root.join(candidate);
        if under_root.is_file() {
            return under_root;
        }
    }
    PathBuf::from(native)
}

/// Builds the launch spec for one process of `config` listening on `port` with `token`.
///
/// `inherited` is the host's own environment (passed in so tests are deterministic).
pub fn build(
    config: &Config,
    host: &HostInfo,
    port: u16,
    token: &Token,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
) -> LaunchSpec {
    build_in(config, host, &host.site_root, port, token, inherited)
}

/// [`build`] for a process that runs from `run_root` (a shadow copy of the site): processPath
/// and the working directory are resolved there; `ASPNETCORE_IIS_PHYSICAL_PATH` stays the
/// site root, as the app's own file lookups through it expect.
pub fn build_in(
    config: &Config,
    host: &HostInfo,
    run_root: &Path,
    port: u16,
    token: &Token,
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
) -> LaunchSpec {
    let mut env: Vec<(OsString, OsString)> = inherited.into_iter().collect();
    let prefer_inherited = env.iter().any(|(k, v)| {
        eq_name(k, "ANCM_PREFER_ENVIRONMENT_VARIABLES") && v.eq_ignore_ascii_case("true")
    });
    let inherited_hosting = lookup(&env, HOSTING_STARTUP).map(|v| v.to_string_lossy().into_owned());
    for (name, value) in &config.environment_variables {
        if prefer_inherited && lookup(&env, name).is_some() {
            continue;
        }
        set(&mut env, name, value.as_str());
    }
    let port_s = port.to_string();
    set(&mut env, "ASPNETCORE_PORT", &port_s);
    set(&mut env, "ASPNETCORE_APPL_PATH", &host.app_path);
    set(&mut env, "ASPNETCORE_TOKEN", token.expose());
    set(&mut env, "ASPNETCORE_IIS_HTTPAUTH", &host.http_auth);
    set(
        &mut env,
        "ASPNETCORE_IIS_PHYSICAL_PATH",
        host.site_root.as_os_str().to_string_lossy().as_ref(),
    );
    set(
        &mut env,
        "ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED",
        if host.websockets_supported {
            "true"
        } else {
            "false"
        },
    );
    if config
        .environment_variable("ASPNETCORE_ANCM_HTTPS_PORT")
        .is_none()
    {
        if let Some(p) = host.https_port {
            set(&mut env, "ASPNETCORE_ANCM_HTTPS_PORT", &p.to_string());
        }
    }
    if config.environment_variable(HOSTING_STARTUP).is_none() {
        let value = match inherited_hosting.as_deref() {
            Some(v) if !v.is_empty() => format!("{v};{IIS_INTEGRATION}"),
            _ => IIS_INTEGRATION.to_owned(),
        };
        set(&mut env, HOSTING_STARTUP, &value);
    }
    let mut arguments = config.arguments.clone();
    if config.dialect == Dialect::HttpPlatform {
        set(&mut env, "HTTP_PLATFORM_PORT", &port_s);
        arguments = replace_ignore_case(&arguments, "%HTTP_PLATFORM_PORT%", &port_s);
    }
    let args = if cfg!(windows) {
        Args::Raw(arguments)
    } else {
        Args::Split(super::cmdline::split_windows(&arguments))
    };
    LaunchSpec {
        program: resolve_program(&config.process_path, run_root),
        args,
        env,
        cwd: run_root.to_path_buf(),
    }
}

/// Environment names compare case-insensitively on Windows and exactly elsewhere.
fn eq_name(a: &OsString, b: &str) -> bool {
    if cfg!(windows) {
        a.to_string_lossy().eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

fn lookup<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsString> {
    env.iter().find(|(k, _)| eq_name(k, name)).map(|(_, v)| v)
}

fn set(env: &mut Vec<(OsString, OsString)>, name: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| eq_name(k, name)) {
        Some(slot) => slot.1 = value.into(),
        None => env.push((name.into(), value.into())),
    }
}

fn replace_ignore_case(haystack: &str, needle: &str, with: &str) -> String {
    let lower = haystack.to_ascii_lowercase();
    let needle_l = needle.to_ascii_lowercase();
    let mut out = String::with_capacity(haystack.len());
    let mut last = 0;
    for (i, _) in lower.match_indices(&needle_l) {
        out.push_str(&haystack[last..i]);
        out.push_str(with);
        last = i + needle.len();
    }
    out.push_str(&haystack[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigBuilder;

    fn config(xml_env: &[(&str, &str)], dialect: Dialect) -> Config {
        let mut b = ConfigBuilder::new("web.config", dialect);
        b.set("processPath", "python3").unwrap();
        b.set("arguments", "app.py \"a b\" --port %HTTP_PLATFORM_PORT%")
            .unwrap();
        for (k, v) in xml_env {
            b.add_environment_variable(k, v).unwrap();
        }
        b.build_with_env(&|_| None).unwrap()
    }

    fn get<'a>(spec: &'a LaunchSpec, k: &str) -> Option<&'a str> {
        lookup(&spec.env, k).and_then(|v| v.to_str())
    }

    #[test]
    fn child_environment_as_ancm_builds_it() {
        let cfg = config(
            &[("FOO", "from-config"), ("ASPNETCORE_PORT", "999")],
            Dialect::AspNetCore,
        );
        let host = HostInfo::new("/srv/app");
        let tok = Token::configured("tkn");
        let inherited = vec![
            ("FOO".into(), "inherited".into()),
            ("PATH".into(), "/bin".into()),
            (HOSTING_STARTUP.into(), "Other".into()),
        ];
        let spec = build(&cfg, &host, 12345, &tok, inherited);
        assert_eq!(get(&spec, "FOO"), Some("from-config"));
        assert_eq!(get(&spec, "PATH"), Some("/bin"));
        assert_eq!(get(&spec, "ASPNETCORE_PORT"), Some("12345"));
        assert_eq!(get(&spec, "ASPNETCORE_TOKEN"), Some("tkn"));
        assert_eq!(get(&spec, "ASPNETCORE_APPL_PATH"), Some("/"));
        assert_eq!(get(&spec, "ASPNETCORE_IIS_HTTPAUTH"), Some("anonymous;"));
        assert_eq!(get(&spec, "ASPNETCORE_IIS_PHYSICAL_PATH"), Some("/srv/app"));
        assert_eq!(
            get(&spec, HOSTING_STARTUP),
            Some("Other;Microsoft.AspNetCore.Server.IISIntegration")
        );
        assert_eq!(get(&spec, "HTTP_PLATFORM_PORT"), None);
        assert_eq!(spec.cwd, Path::new("/srv/app"));
        #[cfg(unix)]
        match &spec.args {
            Args::Split(a) => assert_eq!(a, &["app.py", "a b", "--port", "%HTTP_PLATFORM_PORT%"]),
            Args::Raw(_) => panic!("unix splits"),
        }
    }

    #[test]
    fn a_shadow_copy_is_the_working_directory_but_not_the_physical_path() {
        let cfg = config(&[], Dialect::AspNetCore);
        let host = HostInfo::new("/srv/app");
        let copy = Path::new("/srv/copies/g1");
        let spec = build_in(&cfg, &host, copy, 1, &Token::configured("t"), vec![]);
        assert_eq!(spec.cwd, copy);
        assert_eq!(get(&spec, "ASPNETCORE_IIS_PHYSICAL_PATH"), Some("/srv/app"));
    }

    #[test]
    fn prefer_environment_variables_reverses_precedence() {
        let cfg = config(&[("FOO", "from-config")], Dialect::AspNetCore);
        let inherited = vec![
            ("FOO".into(), "inherited".into()),
            ("ANCM_PREFER_ENVIRONMENT_VARIABLES".into(), "true".into()),
        ];
        let spec = build(
            &cfg,
            &HostInfo::new("/x"),
            2000,
            &Token::configured("t"),
            inherited,
        );
        assert_eq!(get(&spec, "FOO"), Some("inherited"));
    }

    #[test]
    fn http_platform_port_is_substituted() {
        let cfg = config(&[], Dialect::HttpPlatform);
        let spec = build(
            &cfg,
            &HostInfo::new("/x"),
            23456,
            &Token::configured("t"),
            vec![],
        );
        assert_eq!(get(&spec, "HTTP_PLATFORM_PORT"), Some("23456"));
        #[cfg(unix)]
        match &spec.args {
            Args::Split(a) => assert_eq!(a.last().map(String::as_str), Some("23456")),
            Args::Raw(_) => panic!("unix splits"),
        }
    }

    #[test]
    fn program_resolution_prefers_an_existing_file_under_the_site_root() {
        let dir = std::env::temp_dir().join(format!("ancm-resolve-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin").join("app"), b"").unwrap();
        assert_eq!(resolve_program(r".\bin\app", &dir), dir.join("./bin/app"));
        assert_eq!(resolve_program("python3", &dir), PathBuf::from("python3"));
        assert_eq!(
            resolve_program("/usr/bin/env", &dir),
            PathBuf::from("/usr/bin/env")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
